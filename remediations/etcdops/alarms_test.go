package etcdops

import (
	"context"
	"slices"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
)

// armedIDs lists the members with a NOSPACE alarm.
func armedIDs(t *testing.T, cl *clientv3.Client) []uint64 {
	t.Helper()
	resp, err := cl.AlarmList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, a := range resp.Alarms {
		if a.Alarm == pb.AlarmType_NOSPACE {
			ids = append(ids, a.MemberID)
		}
	}
	slices.Sort(ids)
	return ids
}

func TestDisarmNOSPACE(t *testing.T) {
	ctx := context.Background()
	cl, members := threeMembers(ctx, t)
	// etcd raises NOSPACE itself only on a full backend: raise it by hand on every member, and
	// on an ID that is no longer a member.
	raw := pb.NewMaintenanceClient(cl.ActiveConnection())
	arm := func() {
		for _, id := range []uint64{members[0].ID, members[1].ID, members[2].ID, 0xdead} {
			if _, err := raw.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: id, Alarm: pb.AlarmType_NOSPACE}); err != nil {
				t.Fatal(err)
			}
		}
	}
	statuses, err := Status(ctx, cl, members, nil)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("only the member picked", func(t *testing.T) {
		arm()
		d, err := DisarmNOSPACE(ctx, cl, statuses, DisarmOptions{Below: 0.9, Only: func(s remediator.MemberStatus) bool { return s.ID == statuses[1].ID }})
		if err != nil || len(d.Done) != 1 || !strings.HasPrefix(d.Done[0], "disarmed NOSPACE of member "+statuses[1].Name) || len(d.Left) != 3 {
			t.Fatalf("%+v, %v: want member %s disarmed and the 3 others left", d, err, statuses[1].Name)
		}
		if got := armedIDs(t, cl); slices.Contains(got, members[1].ID) || len(got) != 3 {
			t.Errorf("armed after: %x, want all but %x", got, members[1].ID)
		}
	})
	t.Run("refused near the quota, former members disarmed", func(t *testing.T) {
		arm()
		full := slices.Clone(statuses)
		full[0].DBSize = full[0].Quota // as full as the alarm says
		d, err := DisarmNOSPACE(ctx, cl, full, DisarmOptions{Below: 0.8})
		if err != nil || len(d.Done) != 3 || len(d.Refused) != 1 || !strings.Contains(d.Refused[0], "limit 80%") {
			t.Fatalf("%+v, %v: want 3 disarmed (one a former member) and member %s refused", d, err, full[0].Name)
		}
		if got := armedIDs(t, cl); !slices.Equal(got, []uint64{members[0].ID}) {
			t.Errorf("armed after: %x, want only %x", got, members[0].ID)
		}
		if err := d.RefusedError(); remediator.ErrorCode(err) != remediator.EPRECONDITION || !strings.Contains(err.Error(), "raise --quota-backend-bytes") {
			t.Errorf("RefusedError: %v", err)
		}
	})
}

func TestNoAlarms(t *testing.T) {
	clean := []remediator.MemberStatus{{Name: "m1"}, {Name: "m2"}}
	if err := NoAlarms(clean); err != nil {
		t.Fatalf("no alarm armed: %v", err)
	}
	armed := []remediator.MemberStatus{{Name: "m1"}, {Name: "m2", Alarms: []string{"NOSPACE"}}}
	err := NoAlarms(armed)
	if remediator.ErrorCode(err) != remediator.EPRECONDITION || !strings.Contains(err.Error(), "NOSPACE on member m2") {
		t.Fatalf("NOSPACE armed on m2: %v, want EPRECONDITION naming it", err)
	}
}
