package report

import (
	"strings"
	"testing"
	"time"

	"github.com/remediator/remediator"
)

// rejected is an incident turned down before any step ran: it has no member figures and no
// step with a bar.
func rejected() *remediator.Incident {
	t0 := time.Date(2026, 11, 21, 11, 0, 0, 0, time.UTC)
	inc := remediator.NewIncident("20261121-110000-def456", "prod",
		remediator.Decision{Policy: "etcd-nospace", Remediation: "etcd-nospace-recovery", Mode: remediator.ModeApprove}, t0)
	inc.AddEvidence([]remediator.Alert{{
		Source: "alertmanager", Fingerprint: "1c3a5f0d7e2b9a41", Status: remediator.AlertFiring, Cluster: "prod",
		Labels:      map[string]string{"alertname": "etcdDatabaseQuotaLowSpace"},
		Annotations: map[string]string{"summary": "etcd cluster database is running full."},
		StartsAt:    t0.Add(-time.Minute), ReceivedAt: t0,
	}})
	for _, name := range []string{"preflight", "snapshot", "compact"} {
		inc.Steps = append(inc.Steps, remediator.Step{Name: name, Description: "does " + name, Risk: remediator.RiskLow, State: remediator.StepPending})
	}
	inc.SetState(remediator.StateRejected, "rejected by bob", t0.Add(time.Minute))
	return inc
}

func TestHTMLEscapesUntrustedText(t *testing.T) {
	const attack = `<script>alert(1)</script>`
	inc := closed()
	// Everything that comes from an alert, a step or a member can carry markup.
	inc.Steps[0].Output = attack
	inc.Steps[1].Error = attack
	inc.Evidence[0].Labels = map[string]string{"alertname": attack}
	inc.Evidence[0].Annotations = map[string]string{"summary": attack}
	inc.FollowUps = append(inc.FollowUps, attack)
	inc.Before[0].Name = attack // into the chart's text and data attributes too
	ctype, page, err := Renderer{}.Render(inc, "html")
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "text/html; charset=utf-8" {
		t.Errorf("content type %q", ctype)
	}
	if strings.Contains(strings.ToLower(string(page)), "<script") {
		t.Errorf("the page holds a script element:\n%s", page)
	}
	if want := "<pre>&lt;script&gt;alert(1)&lt;/script&gt;</pre>"; !strings.Contains(string(page), want) {
		t.Errorf("the step output is not in the page as %s:\n%s", want, page)
	}
}

func TestHTMLWithoutMemberFiguresOrStepsRun(t *testing.T) {
	_, page, err := Renderer{}.Render(rejected(), "html")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"<p>No member figures were taken.</p>",
		`<svg id="step-timeline"`,
		`<text class="note" y="14">not run (pending)</text>`,
		`<p class="state s-rejected" id="state">rejected</p>`,
	} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the page lacks %s:\n%s", want, page)
		}
	}
	for _, unwanted := range []string{`id="db-size-chart"`, "data-step="} {
		if strings.Contains(string(page), unwanted) {
			t.Errorf("the page holds %s:\n%s", unwanted, page)
		}
	}
}

func TestRenderRefusesAnUnknownFormat(t *testing.T) {
	_, _, err := Renderer{}.Render(closed(), "pdf")
	if remediator.ErrorCode(err) != remediator.EINVALID || !strings.Contains(err.Error(), "use md, html or json") {
		t.Errorf("got %v, want EINVALID naming md, html and json", err)
	}
}
