package monitoring_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/meshtrust/meshtrust/e2e/lab"
)

// Lab start-up dominates, so the package's lab tests share one lab: Vault
// on a file backend (the alert test stops and starts it) and one cluster
// with cert-manager.
var (
	labOnce   sync.Once
	sharedLab *lab.Lab
	labErr    error
)

func TestMain(m *testing.M) {
	// Clients in this process log through controller-runtime's global
	// logger, which prints a warning with a stack trace while unset. The
	// controller under test is a separate process with a log of its own.
	ctrl.SetLogger(logr.Discard())
	code := m.Run()
	if sharedLab != nil {
		if err := sharedLab.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping lab: %v\n", err)
		}
		if code == 0 {
			os.RemoveAll(sharedLab.Dir)
		} else {
			fmt.Fprintf(os.Stderr, "lab logs kept in %s\n", sharedLab.Dir)
		}
	}
	os.Exit(code)
}

// labFor starts the shared lab on first use.
func labFor(t *testing.T) *lab.Lab {
	t.Helper()
	labOnce.Do(func() {
		dir, err := os.MkdirTemp("", "meshtrust-monitoring-e2e-")
		if err != nil {
			labErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		sharedLab, labErr = lab.Start(ctx, lab.Options{Dir: dir, Vault: lab.VaultPersistent, IssuanceBackoff: 10 * time.Second})
		if labErr != nil {
			labErr = fmt.Errorf("starting lab (logs in %s): %w", dir, labErr)
		}
	})
	if labErr != nil {
		t.Fatal(labErr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("lab logs in %s", sharedLab.Dir)
		}
	})
	return sharedLab
}
