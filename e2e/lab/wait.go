package lab

import (
	"context"
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
// timeout passes. The error names the last failure.
func WaitFor(ctx context.Context, timeout time.Duration, cond func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	var last error
	for {
		if last = cond(ctx); last == nil {
			return nil
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
