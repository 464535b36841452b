package remediator

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
)

// HumanBytes writes a byte count the way etcdctl's tables do: 7.8 MB, in powers of 1024.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// RedactURL hides the user info of every URL in s (a URL, a comma-separated list of them, or
// an error that quotes one): nats://user:pass@host becomes nats://xxxxx@host, so that no
// password or token reaches a log line or an error. A password may hold any character but
// the / that ends the authority and the space that ends the URL.
func RedactURL(s string) string {
	starts := urlScheme.FindAllStringIndex(s, -1)
	var b strings.Builder
	last := 0
	for i, m := range starts {
		end := len(s)
		if i+1 < len(starts) {
			end = starts[i+1][0]
		}
		if sp := strings.IndexFunc(s[m[1]:end], unicode.IsSpace); sp >= 0 {
			end = m[1] + sp
		}
		authority := s[m[1]:end]
		if slash := strings.IndexByte(authority, '/'); slash >= 0 {
			authority = authority[:slash]
		}
		b.WriteString(s[last:m[1]])
		last = m[1]
		if at := strings.LastIndexByte(authority, '@'); at >= 0 {
			b.WriteString("xxxxx")
			last = m[1] + at
		}
	}
	b.WriteString(s[last:])
	return b.String()
}

// urlScheme is where a URL starts: its scheme and "://".
var urlScheme = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://`)

// HumanDuration is a length of time as a person reads it, to the precision that matters at
// its size: 809ms, 1.8s, 4m12s, 2h5m, 13d9h; a zero last unit is left out (14m, 3d).
func HumanDuration(d time.Duration) string {
	if d < 0 {
		return "-" + HumanDuration(-d)
	}
	const day = 24 * time.Hour
	// Each size is rounded first, so that 59.96s is 1m, not 60.0s.
	switch {
	case d == 0:
		return "0s"
	case d < time.Millisecond:
		return "<1ms"
	case d.Round(time.Millisecond) < time.Second:
		return fmt.Sprintf("%dms", d.Round(time.Millisecond).Milliseconds())
	case d.Round(100*time.Millisecond) < time.Minute:
		return fmt.Sprintf("%.1fs", d.Round(100*time.Millisecond).Seconds())
	case d.Round(time.Second) < time.Hour:
		d = d.Round(time.Second)
		return units(int64(d/time.Minute), "m", int64(d%time.Minute/time.Second), "s")
	case d.Round(time.Minute) < day:
		d = d.Round(time.Minute)
		return units(int64(d/time.Hour), "h", int64(d%time.Hour/time.Minute), "m")
	}
	d = d.Round(time.Hour)
	return units(int64(d/day), "d", int64(d%day/time.Hour), "h")
}

// units writes a count of a unit and of the next smaller one, leaving out a zero second.
func units(n int64, unit string, rest int64, restUnit string) string {
	if rest == 0 {
		return fmt.Sprintf("%d%s", n, unit)
	}
	return fmt.Sprintf("%d%s%d%s", n, unit, rest, restUnit)
}
