package remediator

import (
	"fmt"
	"regexp"
	"strings"
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
