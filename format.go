package remediator

import (
	"fmt"
	"regexp"
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
// password or token reaches a log line or an error.
func RedactURL(s string) string {
	return credentialsInURL.ReplaceAllString(s, "${1}xxxxx@")
}

// credentialsInURL is the user info of a URL: user, user:password or a token, before an @.
var credentialsInURL = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s,]+@`)
