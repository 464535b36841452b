// Package params reads a remediation's parameters, which policies give as strings, into typed
// values, and reports every bad or unknown one by its key.
package params

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/remediator/remediator"
)

// Reader reads typed parameters and collects the errors.
type Reader struct {
	m    map[string]string
	used map[string]bool
	errs []error
}

// New reads params.
func New(params map[string]string) *Reader {
	return &Reader{m: params, used: map[string]bool{}}
}

func (r *Reader) get(key string) (string, bool) {
	r.used[key] = true
	v, ok := r.m[key]
	return v, ok
}

// String returns the parameter, or def if it is not set.
func (r *Reader) String(key, def string) string {
	if v, ok := r.get(key); ok {
		return v
	}
	return def
}

// Duration returns the parameter as a duration of at least lo, or def if it is not set.
func (r *Reader) Duration(key string, def, lo time.Duration) time.Duration {
	v, ok := r.get(key)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		r.errs = append(r.errs, fmt.Errorf("params.%s: %q is not a duration such as 30s", key, v))
	case d < lo:
		r.errs = append(r.errs, fmt.Errorf("params.%s: must be at least %s", key, lo))
	}
	return d
}

// Bytes returns the parameter as a positive byte count, or def if it is not set.
func (r *Reader) Bytes(key string, def int64) int64 {
	v, ok := r.get(key)
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		r.errs = append(r.errs, fmt.Errorf("params.%s: %q must be a positive number of bytes", key, v))
	}
	return n
}

// Float returns the parameter as a number in (lo, hi], or def if it is not set.
func (r *Reader) Float(key string, def, lo, hi float64) float64 {
	v, ok := r.get(key)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= lo || f > hi {
		r.errs = append(r.errs, fmt.Errorf("params.%s: %q must be a number above %g and at most %g", key, v, lo, hi))
	}
	return f
}

// Bool returns the parameter as true or false, or def if it is not set.
func (r *Reader) Bool(key string, def bool) bool {
	v, ok := r.get(key)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("params.%s: %q is neither true nor false", key, v))
	}
	return b
}

// Err returns every error so far, and one for each parameter nobody asked for, as an
// EINVALID error.
func (r *Reader) Err() error {
	errs := r.errs
	for _, k := range slices.Sorted(maps.Keys(r.m)) {
		if !r.used[k] {
			errs = append(errs, fmt.Errorf("params.%s: unknown parameter (known: %v)", k, slices.Sorted(maps.Keys(r.used))))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return &remediator.Error{Code: remediator.EINVALID, Message: err.Error(), Err: err}
	}
	return nil
}
