package remediator

// Mode says how a matched remediation may run.
type Mode string

// The policy modes.
const (
	// ModeAuto runs the remediation without asking.
	ModeAuto Mode = "auto"
	// ModeApprove opens the incident in awaiting_approval until a human approves it.
	ModeApprove Mode = "approve"
	// ModeDryRun plans the remediation and reports it, touching nothing.
	ModeDryRun Mode = "dry-run"
	// ModeDeny matches the alert so no later policy does, and remediates nothing.
	ModeDeny Mode = "deny"
	// ModeContext keeps the alert as evidence for the incidents around it on its cluster (a
	// slow disk that came before the readiness failures), and remediates nothing.
	ModeContext Mode = "context"
)

// Modes lists every valid mode, for validation messages.
var Modes = []Mode{ModeAuto, ModeApprove, ModeDryRun, ModeDeny, ModeContext}

// Decision is what a policy decided about an alert: a value plus the policy that is its reason.
type Decision struct {
	Policy      string            `json:"policy"`
	Remediation string            `json:"remediation"`
	Mode        Mode              `json:"mode"`
	Params      map[string]string `json:"params,omitempty"`
	Gates       Gates             `json:"gates"`
}
