package lab

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// Eventually polls cond every 100ms until it returns nil or timeout passes,
// then fails t with the last error. Tests use it instead of sleeping.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func(ctx context.Context) error) {
	t.Helper()
	if err := WaitFor(context.Background(), timeout, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// WaitFor polls cond every 100ms until it returns nil, the context ends, or
// timeout passes. The error names the last failure. A failure wrapped by
// Final ends the wait at once: waiting longer cannot help.
func WaitFor(ctx context.Context, timeout time.Duration, cond func(ctx context.Context) error) error {
	return WaitEvery(ctx, timeout, 100*time.Millisecond, cond)
}

// WaitEvery is WaitFor polling every interval.
func WaitEvery(ctx context.Context, timeout, interval time.Duration, cond func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	var last error
	for {
		if last = cond(ctx); last == nil {
			return nil
		}
		var final finalError
		if errors.As(last, &final) {
			return final.err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up after %s: %w", timeout, last)
		case <-ticker.C:
			// A tick and the deadline can be ready together; select picks
			// either. Polling again with a dead context would replace the
			// last real failure with "context deadline exceeded".
			if ctx.Err() != nil {
				return fmt.Errorf("gave up after %s: %w", timeout, last)
			}
		}
	}
}

// Final marks a failure that ends a WaitFor at once.
func Final(err error) error {
	return finalError{err: err}
}

type finalError struct{ err error }

func (f finalError) Error() string { return f.err.Error() }
func (f finalError) Unwrap() error { return f.err }
