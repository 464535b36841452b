package remediator

import (
	"testing"
	"time"
)

func TestDurationReadsAsAPersonWouldSayIt(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    time.Duration
		want string
	}{
		{"zero", 0, "0s"},
		{"under a millisecond", 400 * time.Microsecond, "<1ms"},
		{"milliseconds", 809*time.Millisecond + 400*time.Microsecond, "809ms"},
		{"just under a second rounds up", 999600 * time.Microsecond, "1.0s"},
		{"seconds with one decimal", 1840 * time.Millisecond, "1.8s"},
		{"just under a minute rounds up", 59960 * time.Millisecond, "1m"},
		{"minutes and seconds", 4*time.Minute + 12*time.Second + 300*time.Millisecond, "4m12s"},
		{"whole minutes", 14 * time.Minute, "14m"},
		{"hours and minutes", 2*time.Hour + 5*time.Minute + 20*time.Second, "2h5m"},
		{"just under a day rounds up", 23*time.Hour + 59*time.Minute + 40*time.Second, "1d"},
		{"days and hours", 13*24*time.Hour + 9*time.Hour + 10*time.Minute, "13d9h"},
		{"whole days", 3 * 24 * time.Hour, "3d"},
		{"negative", -1500 * time.Millisecond, "-1.5s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := HumanDuration(tc.d); got != tc.want {
				t.Errorf("HumanDuration(%v) = %q, want %q", tc.d, got, tc.want)
			}
		})
	}
}
