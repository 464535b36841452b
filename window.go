package remediator

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Window is a maintenance window, in a time zone: either a cron schedule of openings, each
// lasting Duration, or weekdays and a daily time range (which may run past midnight: the day
// is the day it starts).
type Window struct {
	Cron     string   `json:"cron,omitempty"`
	Duration Duration `json:"duration,omitempty"`
	Days     []string `json:"days,omitempty"`
	Start    string   `json:"start,omitempty"`
	End      string   `json:"end,omitempty"`
	TimeZone string   `json:"timezone,omitempty"`
}

// horizon bounds the search for the next opening.
const horizon = 8 * 24 * time.Hour

// Validate says what is wrong with the window, if anything.
func (w Window) Validate() error {
	if _, err := w.location(); err != nil {
		return err
	}
	switch {
	case w.Cron != "" && (len(w.Days) > 0 || w.Start != "" || w.End != ""):
		return errors.New("cron and days/start/end are two ways to say it: use one")
	case w.Cron != "":
		if _, err := parseCron(w.Cron); err != nil {
			return err
		}
		if w.Duration <= 0 {
			return errors.New("duration: a cron window needs how long each opening lasts, such as 2h")
		}
		return nil
	}
	if _, err := w.days(); err != nil {
		return err
	}
	start, err := clock(w.Start)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	end, err := clock(w.End)
	if err != nil {
		return fmt.Errorf("end: %w", err)
	}
	if start == end {
		return errors.New("start and end are the same time")
	}
	return nil
}

// compiled is a window parsed once, to be checked minute by minute.
type compiled struct {
	loc        *time.Location
	cron       *cron
	duration   time.Duration
	days       [7]bool
	start, end time.Duration
}

func (w Window) compile() (compiled, error) {
	if err := w.Validate(); err != nil {
		return compiled{}, err
	}
	c := compiled{duration: time.Duration(w.Duration)}
	c.loc, _ = w.location()
	if w.Cron != "" {
		cr, _ := parseCron(w.Cron)
		c.cron = &cr
		return c, nil
	}
	c.days, _ = w.days()
	c.start, _ = clock(w.Start)
	c.end, _ = clock(w.End)
	return c, nil
}

// Contains says whether t falls in the window. An invalid window contains nothing.
func (w Window) Contains(t time.Time) bool {
	c, err := w.compile()
	return err == nil && c.contains(t)
}

// contains works in wall-clock time, as cron does: on the day clocks go forward an opening in
// the skipped hour does not happen, and on the day they go back the repeated hour is open
// twice.
func (c compiled) contains(t time.Time) bool {
	t = t.In(c.loc).Truncate(time.Minute)
	if c.cron != nil {
		for m := t; t.Sub(m) < c.duration; m = m.Add(-time.Minute) {
			if c.cron.matches(m.In(c.loc)) {
				return true
			}
		}
		return false
	}
	now := time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute
	if c.start < c.end {
		return c.days[t.Weekday()] && now >= c.start && now < c.end
	}
	// Past midnight: the evening part belongs to today, the morning part to yesterday.
	return (c.days[t.Weekday()] && now >= c.start) || (c.days[t.AddDate(0, 0, -1).Weekday()] && now < c.end)
}

// NextOpen returns the first minute at or after t that falls in one of the windows, if one
// does within eight days.
func NextOpen(windows []Window, t time.Time) (time.Time, bool) {
	var cs []compiled
	for _, w := range windows {
		if c, err := w.compile(); err == nil {
			cs = append(cs, c)
		}
	}
	t = t.Truncate(time.Minute)
	for m := t; m.Sub(t) <= horizon; m = m.Add(time.Minute) {
		if slices.ContainsFunc(cs, func(c compiled) bool { return c.contains(m) }) {
			return m, true
		}
	}
	return time.Time{}, false
}

func (w Window) location() (*time.Location, error) {
	if w.TimeZone == "" {
		return time.UTC, nil
	}
	loc, err := time.LoadLocation(w.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("timezone: %q is not an IANA time zone such as Europe/Berlin", w.TimeZone)
	}
	return loc, nil
}

var weekdays = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// days returns the window's weekdays; none means every day. "mon-fri" ranges are allowed.
func (w Window) days() ([7]bool, error) {
	var set [7]bool
	if len(w.Days) == 0 {
		return [7]bool{true, true, true, true, true, true, true}, nil
	}
	for _, d := range w.Days {
		lo, hi, isRange := strings.Cut(strings.ToLower(d), "-")
		a, b := slices.Index(weekdays, lo), slices.Index(weekdays, hi)
		if !isRange {
			b = a
		}
		if a < 0 || b < 0 {
			return set, fmt.Errorf("days: %q is not a weekday (mon, tue, ... or a range such as mon-fri)", d)
		}
		for i := a; ; i = (i + 1) % 7 {
			set[i] = true
			if i == b {
				break
			}
		}
	}
	return set, nil
}

// clock parses "HH:MM" into the time since midnight.
func clock(s string) (time.Duration, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a time such as 22:00", s)
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}

// cron is a parsed five-field cron expression.
type cron struct {
	minute, hour, dom, month, dow []bool
	domStar, dowStar              bool
}

var cronNames = map[string]int{
	"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6,
	"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}

// parseCron parses "minute hour day-of-month month day-of-week" with *, lists, ranges, steps
// and day and month names.
func parseCron(expr string) (cron, error) {
	f := strings.Fields(expr)
	if len(f) != 5 {
		return cron{}, fmt.Errorf("cron: %q needs five fields (minute hour day-of-month month day-of-week)", expr)
	}
	var c cron
	var err error
	parts := []struct {
		name   string
		field  string
		lo, hi int
		into   *[]bool
	}{
		{"minute", f[0], 0, 59, &c.minute}, {"hour", f[1], 0, 23, &c.hour}, {"day of month", f[2], 1, 31, &c.dom},
		{"month", f[3], 1, 12, &c.month}, {"day of week", f[4], 0, 7, &c.dow},
	}
	for _, p := range parts {
		if *p.into, err = cronField(p.field, p.lo, p.hi); err != nil {
			return cron{}, fmt.Errorf("cron: %s %q: %w", p.name, p.field, err)
		}
	}
	if c.dow[7] {
		c.dow[0] = true // 7 is Sunday too
	}
	// As in Vixie cron, a day field that starts with * (such as */2) does not restrict.
	c.domStar, c.dowStar = strings.HasPrefix(f[2], "*"), strings.HasPrefix(f[4], "*")
	return c, nil
}

func cronField(field string, lo, hi int) ([]bool, error) {
	set := make([]bool, hi+1)
	for _, item := range strings.Split(field, ",") {
		rng, stepStr, hasStep := strings.Cut(item, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepStr)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("step %q is not a positive number", stepStr)
			}
			step = n
		}
		a, b := lo, hi
		if rng != "*" {
			from, to, isRange := strings.Cut(rng, "-")
			var err error
			if a, err = cronValue(from); err != nil {
				return nil, err
			}
			b = a
			if isRange {
				if b, err = cronValue(to); err != nil {
					return nil, err
				}
			} else if hasStep {
				b = hi
			}
		}
		if a < lo || b > hi || a > b {
			return nil, fmt.Errorf("%d-%d is outside %d-%d", a, b, lo, hi)
		}
		for v := a; v <= b; v += step {
			set[v] = true
		}
	}
	return set, nil
}

func cronValue(s string) (int, error) {
	if n, ok := cronNames[strings.ToLower(s)]; ok {
		return n, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number or a day or month name", s)
	}
	return n, nil
}

// matches says whether the minute t (in the window's zone) is a firing time.
func (c cron) matches(t time.Time) bool {
	if !c.minute[t.Minute()] || !c.hour[t.Hour()] || !c.month[int(t.Month())] {
		return false
	}
	dom, dow := c.dom[t.Day()], c.dow[int(t.Weekday())]
	if c.domStar || c.dowStar {
		return dom && dow
	}
	return dom || dow // cron's rule: either day field may match when both are restricted
}
