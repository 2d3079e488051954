package monitoring_test

import (
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/meshtrust/meshtrust/e2e/lab"
)

// Lab start-up dominates, so the package's lab tests share one lab: Vault
// on a file backend (the alert test stops and starts it) and one cluster
// with cert-manager.
var shared = lab.NewShared(lab.Options{Vault: lab.VaultPersistent, IssuanceBackoff: 10 * time.Second})

func TestMain(m *testing.M) {
	// Clients in this process log through controller-runtime's global
	// logger, which prints a warning with a stack trace while unset. The
	// controller under test is a separate process with a log of its own.
	ctrl.SetLogger(logr.Discard())
	code := m.Run()
	shared.Stop(code)
	os.Exit(code)
}

// labFor starts the shared lab on first use.
func labFor(t *testing.T) *lab.Lab {
	t.Helper()
	return shared.Get(t)
}
