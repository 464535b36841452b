package agent

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/remediator/remediator"
)

// Bounds of the values set-flags takes.
const (
	// minQuota and maxQuota bound --quota-backend-bytes.
	minQuota = 1 << 20
	maxQuota = 64 << 30
	// defaultQuota is etcd's quota when --quota-backend-bytes is not set.
	defaultQuota = 2 << 30
)

// flagRule checks a value a remediation sets for a flag, against the component's flags as
// they are now and etcd's as the agent found them when it started.
type flagRule func(a *Agent, current map[string]string, value string) error

// allowedFlags are the only flags set-flags changes, per component: the flags the catalog's
// remediations set, each with what its value may be. Any other flag, such as kube-apiserver's
// --authorization-mode or etcd's --data-dir, is refused.
var allowedFlags = map[remediator.Component]map[string]flagRule{
	remediator.ComponentAPIServer: {
		"etcd-healthcheck-timeout": checkTimeout,
		"etcd-readycheck-timeout":  checkTimeout,
	},
	remediator.ComponentEtcd: {
		"quota-backend-bytes":   checkQuota,
		"force-new-cluster":     checkBare,
		"initial-cluster-state": checkOneOf("new", "existing"),
		"initial-cluster":       checkInitialCluster,
	},
}

// removable are the only flags set-flags removes: the one a forced start leaves behind. Removing
// any other would set it to its default behind the rules' backs (a quota back to 2 GiB).
var removable = []string{"force-new-cluster"}

// allowed checks a set-flags action against allowedFlags and removable.
func (a *Agent) allowed(act remediator.NodeAction, current map[string]string) error {
	rules := allowedFlags[act.Component]
	names := func() string {
		var n []string
		for name := range rules {
			n = append(n, "--"+name)
		}
		slices.Sort(n)
		return strings.Join(n, ", ")
	}
	for name, value := range act.Set {
		rule, ok := rules[name]
		if !ok {
			return remediator.Errorf(remediator.EFORBIDDEN, "set-flags: --%s of %s is not a flag remediator sets (it sets only %s)", name, act.Component, names())
		}
		if err := rule(a, current, value); err != nil {
			return remediator.Errorf(remediator.EFORBIDDEN, "set-flags: --%s=%q refused: %v", name, value, err)
		}
	}
	for _, name := range act.Remove {
		if _, ok := rules[name]; !ok || !slices.Contains(removable, name) {
			return remediator.Errorf(remediator.EFORBIDDEN, "set-flags: removing --%s of %s refused: remediator removes only --%s", name, act.Component, strings.Join(removable, ", --"))
		}
	}
	return nil
}

func checkTimeout(_ *Agent, _ map[string]string, v string) error {
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		return fmt.Errorf("not a duration such as 4s")
	case d <= 0 || d > remediator.MaxCheckTimeout:
		return fmt.Errorf("must be above 0 and at most %s", remediator.MaxCheckTimeout)
	}
	return nil
}

func checkQuota(_ *Agent, current map[string]string, v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return fmt.Errorf("not a size in bytes")
	}
	if n < minQuota || n > maxQuota {
		return fmt.Errorf("must be between %s and %s", remediator.HumanBytes(minQuota), remediator.HumanBytes(maxQuota))
	}
	cur, err := strconv.ParseInt(current["quota-backend-bytes"], 10, 64)
	if err != nil || cur <= 0 {
		cur = defaultQuota
	}
	if n < cur {
		return fmt.Errorf("below the current %s: a smaller quota heals nothing", remediator.HumanBytes(cur))
	}
	return nil
}

func checkBare(_ *Agent, _ map[string]string, v string) error {
	if v != "" && v != "true" {
		return fmt.Errorf("a bare flag takes no value")
	}
	return nil
}

func checkOneOf(values ...string) flagRule {
	return func(_ *Agent, _ map[string]string, v string) error {
		if !slices.Contains(values, v) {
			return fmt.Errorf("must be one of %s", strings.Join(values, ", "))
		}
		return nil
	}
}

// checkInitialCluster takes member=URL pairs of peer URLs (http or https, host and port, no
// more), in which this member appears under its name with its peer URLs as the agent found
// them when it started.
func checkInitialCluster(a *Agent, _ map[string]string, v string) error {
	name, peers := a.found.flags["name"], a.found.flags["initial-advertise-peer-urls"]
	if name == "" || peers == "" {
		return fmt.Errorf("cannot check it: etcd's --name and --initial-advertise-peer-urls were not in its manifest when the agent started%s", a.found.why())
	}
	var own []string
	for _, pair := range strings.Split(v, ",") {
		member, raw, ok := strings.Cut(pair, "=")
		if !ok || member == "" || !shellWord(member) {
			return fmt.Errorf("%q is not member=URL", pair)
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("%q is not a peer URL such as https://10.0.0.11:2380", raw)
		}
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil || port == "" {
			return fmt.Errorf("%q has no port", raw)
		}
		if net.ParseIP(host) == nil && !shellWord(host) {
			return fmt.Errorf("%q is not a peer URL such as https://10.0.0.11:2380", raw)
		}
		if member == name {
			own = append(own, raw)
		}
	}
	want := strings.Split(peers, ",")
	slices.Sort(own)
	slices.Sort(want)
	if !slices.Equal(own, want) {
		return fmt.Errorf("this member, %s, must be in it with its peer URLs %s", name, peers)
	}
	return nil
}

// shellWord says whether a member name is plain: letters, digits, and - . _.
func shellWord(s string) bool {
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._") == ""
}
