package membership

import (
	"strings"
	"testing"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/remediations/etcdops"
)

func testMembers() []member {
	m := func(id uint64, name, host string) member {
		return member{Member: etcdops.Member{ID: id, Name: name, Endpoint: "https://" + host + ":2379"}, Started: true,
			ClientURLs: []string{"https://" + host + ":2379"}, PeerURLs: []string{"https://" + host + ":2380"}}
	}
	return []member{m(1, "cp-1", "10.0.0.11"), m(2, "cp-2", "10.0.0.12"), m(3, "cp-3", "10.0.0.13")}
}

func TestMemberFromAlerts(t *testing.T) {
	firing := func(labels ...string) remediator.Alert {
		a := remediator.Alert{Status: remediator.AlertFiring, Labels: map[string]string{}}
		for i := 0; i < len(labels); i += 2 {
			a.Labels[labels[i]] = labels[i+1]
		}
		return a
	}
	resolved := firing("member", "cp-1")
	resolved.Status = remediator.AlertResolved
	tests := []struct {
		name   string
		alerts []remediator.Alert
		want   string
		err    string
	}{
		{"member label", []remediator.Alert{firing("member", "cp-2")}, "cp-2", ""},
		{"kubeadm pod", []remediator.Alert{firing("pod", "etcd-cp-3")}, "cp-3", ""},
		{"client instance", []remediator.Alert{firing("instance", "10.0.0.13:2379")}, "cp-3", ""},
		{"metrics instance, by its host", []remediator.Alert{firing("instance", "10.0.0.12:2381")}, "cp-2", ""},
		{"the most telling label first", []remediator.Alert{firing("member", "cp-1", "instance", "10.0.0.12:2379")}, "cp-1", ""},
		{"resolved alerts do not count beside firing ones", []remediator.Alert{resolved, firing("member", "cp-2")}, "cp-2", ""},
		{"two members", []remediator.Alert{firing("member", "cp-1"), firing("member", "cp-2")}, "", "the alerts name several members (cp-1, cp-2)"},
		{"no member", []remediator.Alert{firing("alertname", "etcdNoLeader", "instance", "10.0.0.99:2379")}, "", "the alerts do not say which member to replace"},
		{"no alerts", nil, "", "set params.member"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := memberFromAlerts(tt.alerts, testMembers())
			if tt.err != "" {
				if remediator.ErrorCode(err) != remediator.EPRECONDITION || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want EPRECONDITION with %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q (%v), want %q", got, err, tt.want)
			}
		})
	}
}

func TestCheckWithout(t *testing.T) {
	healthy := remediator.MemberStatus{ClusterID: "c"}
	down := remediator.MemberStatus{ClusterID: "c", Error: "connection refused"}
	tests := []struct {
		name     string
		statuses []remediator.MemberStatus
		learner  int // index of a learner, or -1
		err      string
	}{
		{"others healthy", []remediator.MemberStatus{healthy, healthy, down}, -1, ""},
		{"the member itself healthy", []remediator.MemberStatus{healthy, healthy, healthy}, -1, ""},
		{"a second member down", []remediator.MemberStatus{healthy, down, down}, -1, "2 voting members, 1 of them healthy, and needs 2"},
		{"a healthy learner does not vote", []remediator.MemberStatus{down, healthy, down}, 1, "1 voting members, 0 of them healthy, and needs 1"},
		{"a CORRUPT other", []remediator.MemberStatus{healthy, {ClusterID: "c", Alarms: []string{"CORRUPT"}}, down}, -1, "needs 2 for a quorum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			members := testMembers()
			if tt.learner >= 0 {
				members[tt.learner].Learner = true
			}
			err := checkWithout(members, tt.statuses, "3", "cp-3")
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if remediator.ErrorCode(err) != remediator.EPRECONDITION || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %v, want EPRECONDITION with %q", err, tt.err)
			}
		})
	}
}

func TestParamsAreChecked(t *testing.T) {
	tests := []struct {
		name string
		plan func(map[string]string) ([]remediator.PlannedStep, error)
		p    map[string]string
		want string
	}{
		{"force not a bool", NewReplace(nil, nil, "").Plan, map[string]string{"force": "yes"}, `params.force: "yes" is neither true nor false`},
		{"promote timeout too short", NewReplace(nil, nil, "").Plan, map[string]string{"promote_timeout": "10ms"}, "params.promote_timeout: must be at least 1s"},
		{"member is not a restore parameter", NewQuorumRestore(nil, nil, "").Plan, map[string]string{"member": "cp-1"}, "params.member: unknown parameter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.plan(tt.p)
			if remediator.ErrorCode(err) != remediator.EINVALID || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want EINVALID with %q", err, tt.want)
			}
		})
	}
	for _, plan := range []func(map[string]string) ([]remediator.PlannedStep, error){NewReplace(nil, nil, "").Plan, NewQuorumRestore(nil, nil, "").Plan} {
		steps, err := plan(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range steps {
			if s.Risk == "" || s.Description == "" || s.Run == nil {
				t.Errorf("step %s: risk %q, description %q", s.Name, s.Risk, s.Description)
			}
		}
	}
}
