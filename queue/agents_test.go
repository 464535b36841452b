package queue

import (
	"strings"
	"testing"
)

func TestAgentSubjectTakesFQDNNodeNames(t *testing.T) {
	for _, tc := range []struct {
		cluster, node, want, wantErr string
	}{
		{"prod", "cp-1", "remediator.agent.prod.cp-1", ""},
		// EKS and many clouds name nodes by their DNS name.
		{"prod", "ip-10-0-0-11.ec2.internal", "remediator.agent.prod.ip-10-0-0-11~ec2~internal", ""},
		{"prod", "cp.*", "", "no wildcards"},
		{"prod", "cp~1", "", "no wildcards"},
		{"prod", "cp-1.", "", "empty dot-separated parts"},
		{"prod", "", "", "cannot name an agent"},
		{"pro.d", "cp-1", "", `cluster "pro.d" cannot name an agent: no dots`},
	} {
		got, err := AgentSubject(tc.cluster, tc.node)
		if got != tc.want || (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("AgentSubject(%q, %q) = %q, %v; want %q, %q", tc.cluster, tc.node, got, err, tc.want, tc.wantErr)
		}
	}
}
