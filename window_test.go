package remediator

import (
	"testing"
	"time"
)

func TestWindowContains(t *testing.T) {
	berlin := "Europe/Berlin"
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	nights := Window{Days: []string{"mon-fri"}, Start: "22:00", End: "06:00", TimeZone: berlin}
	saturday := Window{Cron: "30 2 * * sat", Duration: Duration(2 * time.Hour)}
	for _, tc := range []struct {
		name string
		w    Window
		t    string
		want bool
	}{
		{"weeknight evening, Berlin time", nights, "2026-11-23T21:30:00Z", true}, // Mon 22:30 CET
		{"before it opens", nights, "2026-11-23T20:59:00Z", false},               // Mon 21:59 CET
		{"past midnight belongs to the day it started", nights, "2026-11-24T04:00:00Z", true},
		{"Saturday morning after Friday night", nights, "2026-11-28T04:59:00Z", true}, // Sat 05:59, Fri's night
		{"Saturday night is not a weeknight", nights, "2026-11-28T22:30:00Z", false},
		{"Sunday morning after Saturday night", nights, "2026-11-29T04:00:00Z", false},
		{"cron: at the opening", saturday, "2026-11-28T02:30:00Z", true},
		{"cron: within the duration", saturday, "2026-11-28T04:29:00Z", true},
		{"cron: duration over", saturday, "2026-11-28T04:30:00Z", false},
		{"cron: other day", saturday, "2026-11-27T03:00:00Z", false},
		{"cron: day of month or weekday", Window{Cron: "0 0 1 * mon", Duration: Duration(time.Hour)}, "2026-11-23T00:10:00Z", true},
	} {
		if got := tc.w.Contains(at(tc.t)); got != tc.want {
			t.Errorf("%s: Contains(%s) = %v, want %v", tc.name, tc.t, got, tc.want)
		}
	}
	next, ok := NextOpen([]Window{nights, saturday}, at("2026-11-28T10:00:00Z"))
	if want := at("2026-11-30T21:00:00Z"); !ok || !next.Equal(want) { // Monday 22:00 in Berlin
		t.Errorf("NextOpen from Saturday noon: %s (%v), want %s", next, ok, want)
	}
}
