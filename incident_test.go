package remediator

import (
	"encoding/json"
	"testing"
)

func TestStepProgress(t *testing.T) {
	inc := Incident{Steps: []Step{
		{Name: "snapshot", Progress: json.RawMessage(`{"revision":42}`)},
		{Name: "compact"},
		{Name: "broken", Progress: json.RawMessage(`{"revision":`)},
	}}
	var p struct{ Revision int64 }
	if !inc.StepProgress("snapshot", &p) || p.Revision != 42 {
		t.Fatalf("snapshot progress: %+v", p)
	}
	for _, step := range []string{"compact", "broken", "absent"} {
		if inc.StepProgress(step, &p) {
			t.Errorf("%s: reported progress", step)
		}
	}
}
