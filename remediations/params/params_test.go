package params_test

import (
	"testing"
	"time"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/remediations/params"
)

type timing struct {
	Health time.Duration `param:"health_timeout" default:"30s" min:"1s" doc:"longest a member may take to be healthy"`
}

type example struct {
	Prefix string        `param:"probe_prefix" default:"remediator/probe" doc:"key prefix of the verification write"`
	Ratio  float64       `param:"min_ratio" default:"0.5" range:"(0,1]" doc:"act from this share"`
	Quota  params.Bytes  `param:"quota_bytes" doc:"the members' quota"`
	Pause  time.Duration `param:"pause" default:"0s" doc:"wait between members"`
	Force  bool          `param:"force" default:"false" doc:"act on a healthy member"`
	timing
	unexported int
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   map[string]string
		want example
		err  string
	}{
		{name: "defaults", want: example{Prefix: "remediator/probe", Ratio: 0.5, timing: timing{30 * time.Second}}},
		{name: "every kind set",
			in:   map[string]string{"probe_prefix": "p", "min_ratio": "1", "quota_bytes": "16777216", "pause": "1m", "force": "true", "health_timeout": "2s"},
			want: example{Prefix: "p", Ratio: 1, Quota: 16 << 20, Pause: time.Minute, Force: true, timing: timing{2 * time.Second}}},
		{name: "every error, each by its key",
			in: map[string]string{"min_ratio": "0", "quota_bytes": "-1", "pause": "soon", "force": "yes", "health_timeout": "10ms", "probe_prefx": "x"},
			err: `params.min_ratio: "0" must be a number above 0 and at most 1` + "\n" +
				`params.quota_bytes: "-1" must be a positive number of bytes` + "\n" +
				`params.pause: "soon" is not a duration such as 30s` + "\n" +
				`params.force: "yes" is neither true nor false` + "\n" +
				`params.health_timeout: must be at least 1s` + "\n" +
				`params.probe_prefx: unknown parameter (known: [force health_timeout min_ratio pause probe_prefix quota_bytes])`},
		{name: "a negative duration", in: map[string]string{"pause": "-1s"},
			err: `params.pause: "-1s" is negative`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got example
			err := params.Parse(tc.in, &got)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err || remediator.ErrorCode(err) != remediator.EINVALID {
					t.Fatalf("Parse: %v (code %s), want EINVALID:\n%s", err, remediator.ErrorCode(err), tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("Parse: %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestMarkdown(t *testing.T) {
	got := params.Markdown(params.Fields(&example{}))
	want := "| parameter | default | kind | meaning |\n|---|---|---|---|\n" +
		"| `probe_prefix` | `remediator/probe` | text | key prefix of the verification write |\n" +
		"| `min_ratio` | `0.5` | number above 0, at most 1 | act from this share |\n" +
		"| `quota_bytes` | none | bytes | the members' quota |\n" +
		"| `pause` | `0s` | duration | wait between members |\n" +
		"| `force` | `false` | true or false | act on a healthy member |\n" +
		"| `health_timeout` | `30s` | duration, at least 1s | longest a member may take to be healthy |\n"
	if got != want {
		t.Fatalf("Markdown:\n%s\nwant:\n%s", got, want)
	}
}

func TestFieldsRefusesWhatItCannotRead(t *testing.T) {
	for name, p := range map[string]any{
		"no doc": &struct {
			A string `param:"a"`
		}{},
		"bad default": &struct {
			A time.Duration `param:"a" default:"later" doc:"x"`
		}{},
		"bad min": &struct {
			A time.Duration `param:"a" min:"soon" doc:"x"`
		}{},
		"bad range": &struct {
			A float64 `param:"a" range:"0..1" doc:"x"`
		}{},
		"unknown type": &struct {
			A int `param:"a" doc:"x"`
		}{},
		"declared twice": &struct {
			A string `param:"a" doc:"x"`
			B string `param:"a" doc:"y"`
		}{},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("Fields did not refuse it")
				}
			}()
			params.Fields(p)
		})
	}
}
