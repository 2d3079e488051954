package lab

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// Shared is one lab for every test of a package, where starting a lab per
// test would dominate the package's run time. The first test that asks
// starts it; TestMain stops it once m.Run returns.
type Shared struct {
	opts Options
	once sync.Once
	lab  *Lab
	err  error
}

// NewShared describes the package's lab; nothing starts until Get.
func NewShared(opts Options) *Shared { return &Shared{opts: opts} }

// Get starts the lab on first use and returns it. A test that fails says
// where the logs are, and they are kept.
func (s *Shared) Get(t testing.TB) *Lab {
	t.Helper()
	s.once.Do(func() {
		opts := s.opts
		opts.KeepDir = opts.KeepDir || os.Getenv(KeepEnv) != ""
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		s.lab, s.err = Start(ctx, opts)
	})
	if s.err != nil {
		t.Fatalf("starting the package's lab: %v", s.err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			s.lab.KeepDir()
			t.Logf("lab logs kept in %s", s.lab.Dir)
		}
	})
	return s.lab
}

// Stop stops the lab, if a test started it, for TestMain's exit code: a
// failed run keeps the lab's directory and prints where it is.
func (s *Shared) Stop(code int) {
	if s.lab == nil {
		return
	}
	if code != 0 {
		s.lab.KeepDir()
	}
	if err := s.lab.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stopping lab: %v\n", err)
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "lab logs kept in %s\n", s.lab.Dir)
	}
}
