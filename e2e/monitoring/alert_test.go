package monitoring_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/e2e/mesh"
	"github.com/meshtrust/meshtrust/e2e/monitoring"
	"github.com/meshtrust/meshtrust/internal/pki"
)

// The intermediate lives 4 minutes and cert-manager renews it 2 minutes
// before expiry. The lifetime guard is 1m + 1m = 2m, so the intermediate is
// inside it from the moment cert-manager should have renewed it, and
// MeshtrustCACertsExpiringSoon (for: 1m) fires a minute later if that
// renewal cannot happen.
const (
	intermediateDuration = "4m"
	intermediateRenew    = "2m"
	workloadTTL          = "1m"
	safetyMargin         = "1m"
	expiringAlert        = "MeshtrustCACertsExpiringSoon"
	issuerAlert          = "MeshtrustIssuerNotReady"
)

// TestExpiringIntermediateAlertFiresAndResolves runs the real
// meshtrust-controller binary against a lab cluster, with a real Prometheus
// scraping its metrics endpoint and evaluating the chart's rules file. With
// Vault stopped, the short-lived intermediate cannot renew: the expiry alert
// goes pending, then fires. With Vault started again the renewal reaches
// cacerts and the alert resolves. Every state is read through Prometheus's
// HTTP API; the figures are printed, never asserted.
func TestExpiringIntermediateAlertFiresAndResolves(t *testing.T) {
	l := labFor(t)
	c := l.Clusters[0]
	root, _ := repo(t)
	ctx := testCtx(t, 15*time.Minute)

	owner, err := mesh.NewCLI(l, c.Name)
	if err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := owner.Run(ctx, "vault", "bootstrap"); code != 0 {
		t.Fatalf("meshtrust vault bootstrap: exit %d: %s%s", code, out, errOut)
	}
	if _, err := owner.Enrol(ctx, c, "--duration", intermediateDuration, "--renew-before", intermediateRenew); err != nil {
		t.Fatal(err)
	}

	metricsAddr := freeAddr(t)
	startController(t, root, owner.Kubeconfig, filepath.Join(l.Dir, "meshtrust-controller.log"),
		"--metrics-bind-address="+metricsAddr,
		"--health-probe-bind-address="+freeAddr(t),
		"--leader-elect=false",
		"--issuer-cluster-resource-namespace="+mesh.ControllerNamespace,
		"--issuer-health-check-interval=5s",
		"--syncer-watch-namespaces="+mesh.IstioNamespace,
		"--syncer-target-namespaces="+mesh.IstioNamespace,
		"--syncer-workload-cert-ttl="+workloadTTL,
		"--syncer-safety-margin="+safetyMargin,
	)
	prom := startPrometheus(t, monitoring.ServerConfig{
		ScrapeInterval: time.Second, EvaluationInterval: time.Second,
		Targets:   []string{metricsAddr},
		RuleFiles: []string{filepath.Join(root, monitoring.RulesFile)},
	})

	// Healthy: cacerts written, and Prometheus sees what the controller
	// knows: the intermediate's real notAfter, the issuer Ready, the
	// Certificate synced, and no expiry alert.
	var first *x509.Certificate
	lab.Eventually(t, 3*time.Minute, "cacerts written and its expiry scraped", func(ctx context.Context) error {
		sec, err := mesh.CACerts(ctx, c)
		if err != nil {
			return err
		}
		if first, err = caCert(sec); err != nil {
			return err
		}
		return expectValue(ctx, prom, `meshtrust_cacerts_expiry_timestamp_seconds{namespace="istio-system",name="cacerts"}`, float64(first.NotAfter.Unix()))
	})
	lab.Eventually(t, time.Minute, "issuer Ready and Certificate synced, as Prometheus sees them", func(ctx context.Context) error {
		return errors.Join(
			expectValue(ctx, prom, `meshtrust_issuer_ready_status{kind="VaultClusterIssuer",name="meshtrust-vault",condition="True"}`, 1),
			expectValue(ctx, prom, `meshtrust_certificate_cacerts_synced_status{namespace="istio-system",name="istio-ca",condition="True"}`, 1),
			expectValue(ctx, prom, `up{job="meshtrust"}`, 1),
		)
	})
	if a := findAlert(ctx, t, prom, expiringAlert); a != nil {
		t.Fatalf("%s is %s while the intermediate has %s left: %+v", expiringAlert, a.State, time.Until(first.NotAfter).Round(time.Second), a)
	}
	healthyAt := time.Now()
	t.Logf("healthy: cacerts serial %s, notAfter %s (%s left), lifetime guard %s+%s",
		first.SerialNumber, first.NotAfter.UTC().Format(time.TimeOnly), time.Until(first.NotAfter).Round(time.Second), workloadTTL, safetyMargin)

	// Vault goes away: nothing can renew.
	if err := l.Vault.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	var pendingAt, firingAt, issuerPendingAt time.Time
	var firing *monitoring.Alert
	lab.Eventually(t, 6*time.Minute, expiringAlert+" firing", func(ctx context.Context) error {
		alerts, err := prom.Alerts(ctx)
		if err != nil {
			return err
		}
		now := time.Now()
		for i, a := range alerts {
			switch {
			case a.Labels["alertname"] == issuerAlert && issuerPendingAt.IsZero():
				issuerPendingAt = now
			case a.Labels["alertname"] != expiringAlert:
			case a.State == "pending" && pendingAt.IsZero():
				pendingAt = now
			case a.State == "firing":
				firingAt, firing = now, &alerts[i]
				return nil
			}
		}
		return fmt.Errorf("alerts: %v", alertStates(alerts))
	})
	want := map[string]string{"namespace": "istio-system", "name": "cacerts", "severity": "critical", "job": "meshtrust", "instance": metricsAddr}
	for k, v := range want {
		if firing.Labels[k] != v {
			t.Errorf("firing alert label %s = %q, want %q (labels %v)", k, firing.Labels[k], v, firing.Labels)
		}
	}
	if !strings.Contains(firing.Annotations["description"], "istio-system/cacerts expires in") {
		t.Errorf("description: %q", firing.Annotations["description"])
	}
	if issuerPendingAt.IsZero() {
		t.Errorf("%s never went pending while Vault was down", issuerAlert)
	}
	sec, err := mesh.CACerts(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if cur, err := caCert(sec); err != nil || cur.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("cacerts changed while Vault was down (serial %v, err %v)", cur, err)
	}
	left := first.NotAfter.Sub(firingAt)

	// Vault comes back: the pending renewal is signed, synced, and the
	// alert resolves.
	startAsked := time.Now()
	if err := l.Vault.Start(ctx); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	var renewedAt time.Time
	var renewed *x509.Certificate
	lab.Eventually(t, 3*time.Minute, expiringAlert+" resolved after the renewal", func(ctx context.Context) error {
		if renewedAt.IsZero() {
			sec, err := mesh.CACerts(ctx, c)
			if err != nil {
				return err
			}
			cur, err := caCert(sec)
			if err != nil {
				return err
			}
			if cur.SerialNumber.Cmp(first.SerialNumber) == 0 {
				return errors.New("cacerts still holds the first intermediate")
			}
			renewedAt, renewed = time.Now(), cur
		}
		alerts, err := prom.Alerts(ctx)
		if err != nil {
			return err
		}
		for _, a := range alerts {
			if a.Labels["alertname"] == expiringAlert {
				return fmt.Errorf("%s still %s", expiringAlert, a.State)
			}
		}
		return nil
	})
	resolvedAt := time.Now()
	if s, err := prom.Query(ctx, `ALERTS{alertname="`+expiringAlert+`"}`); err != nil || len(s) != 0 {
		t.Errorf("ALERTS after the resolve: %v, %v", s, err)
	}
	lab.Eventually(t, time.Minute, "the renewed expiry scraped", func(ctx context.Context) error {
		return expectValue(ctx, prom, `meshtrust_cacerts_expiry_timestamp_seconds{namespace="istio-system",name="cacerts"}`, float64(renewed.NotAfter.Unix()))
	})

	t.Logf("Vault stopped; %s pending after %s, firing after %s (intermediate %s from expiry); %s pending after %s",
		expiringAlert, pendingAt.Sub(stopped).Round(100*time.Millisecond), firingAt.Sub(stopped).Round(100*time.Millisecond),
		left.Round(time.Second), issuerAlert, issuerPendingAt.Sub(stopped).Round(100*time.Millisecond))
	t.Logf("Vault start asked %s after the alert fired, unsealed and serving %s later; renewed intermediate in cacerts %s after that, alert resolved %s after Vault was serving (%s from firing to resolved)",
		startAsked.Sub(firingAt).Round(100*time.Millisecond), started.Sub(startAsked).Round(100*time.Millisecond),
		renewedAt.Sub(started).Round(100*time.Millisecond), resolvedAt.Sub(started).Round(100*time.Millisecond),
		resolvedAt.Sub(firingAt).Round(100*time.Millisecond))

	plotRun(ctx, t, prom, healthyAt.Add(-5*time.Second), resolvedAt.Add(20*time.Second),
		[]monitoring.Marker{{At: stopped, Label: "Vault stopped"}, {At: started, Label: "Vault started"}})
}

// caCert parses the signing certificate in cacerts.
func caCert(sec *corev1.Secret) (*x509.Certificate, error) {
	block, _ := pem.Decode(sec.Data[pki.CACertKey])
	if block == nil {
		return nil, fmt.Errorf("cacerts has no PEM in %s", pki.CACertKey)
	}
	return x509.ParseCertificate(block.Bytes)
}

// expectValue says why expr does not evaluate to exactly one series of
// value want, or nil.
func expectValue(ctx context.Context, prom *monitoring.Server, expr string, want float64) error {
	s, err := prom.Query(ctx, expr)
	if err != nil {
		return err
	}
	if len(s) != 1 || math.Abs(s[0].Value-want) > 1e-9 {
		return fmt.Errorf("%s = %v, want one series of %v", expr, s, strconv.FormatFloat(want, 'f', -1, 64))
	}
	return nil
}

func findAlert(ctx context.Context, t *testing.T, prom *monitoring.Server, name string) *monitoring.Alert {
	t.Helper()
	alerts, err := prom.Alerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range alerts {
		if alerts[i].Labels["alertname"] == name {
			return &alerts[i]
		}
	}
	return nil
}

func alertStates(alerts []monitoring.Alert) []string {
	var out []string
	for _, a := range alerts {
		out = append(out, a.Labels["alertname"]+"="+a.State)
	}
	return out
}

// freeAddr returns 127.0.0.1:<a port free now>.
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := monitoring.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// startController builds cmd/meshtrust-controller and runs it with args
// against the kubeconfig's current context until t ends, logging to
// logPath. It gets SIGKILL if the test binary dies.
func startController(t *testing.T, root, kubeconfig, logPath string, args ...string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "meshtrust-controller")
	build := exec.CommandContext(testCtx(t, 10*time.Minute), "go", "build", "-o", bin, "./cmd/meshtrust-controller")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building meshtrust-controller: %v\n%s", err, out)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logFile.Close()
		if t.Failed() {
			t.Logf("meshtrust-controller log: %s", logPath)
		}
	})
}
