package monitoring_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"

	"github.com/meshtrust/meshtrust/e2e/deploy"
	"github.com/meshtrust/meshtrust/e2e/monitoring"
)

// TestAlertRulesUnit runs promtool's syntax check and its unit tests of
// every rule (testdata/alerts_test.yaml).
func TestAlertRulesUnit(t *testing.T) {
	root, tl := repo(t)
	for _, args := range [][]string{
		{"check", "rules", monitoring.RulesFile},
		{"test", "rules", monitoring.RulesTestFile},
	} {
		cmd := exec.CommandContext(testCtx(t, 2*time.Minute), tl.Promtool, args...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
	}
}

// TestAlertRulesUnitCanFail shows promtool's unit tests fail when a rule
// changes: the same tests against the rules with one `for` lengthened.
func TestAlertRulesUnitCanFail(t *testing.T) {
	root, tl := repo(t)
	data, err := os.ReadFile(filepath.Join(root, monitoring.RulesFile))
	if err != nil {
		t.Fatal(err)
	}
	changed := bytes.Replace(data, []byte("for: 1m"), []byte("for: 30m"), 1)
	if bytes.Equal(changed, data) {
		t.Fatal("no `for: 1m` in the rules to change")
	}
	tests, err := os.ReadFile(filepath.Join(root, monitoring.RulesTestFile))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rulesPath := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesPath, changed, 0o600); err != nil {
		t.Fatal(err)
	}
	tests = bytes.Replace(tests, []byte("../../../"+monitoring.RulesFile), []byte(rulesPath), 1)
	testsPath := filepath.Join(dir, "alerts_test.yaml")
	if err := os.WriteFile(testsPath, tests, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(testCtx(t, 2*time.Minute), tl.Promtool, "test", "rules", testsPath).CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("MeshtrustCACertsExpiringSoon")) {
		t.Fatalf("promtool passed the changed rules (err %v):\n%s", err, out)
	}
}

// TestPrometheusRuleIsTheRulesFile renders the chart's PrometheusRule and
// compares its spec with the plain rules file: one source, two forms.
func TestPrometheusRuleIsTheRulesFile(t *testing.T) {
	root, _ := repo(t)
	ctx := testCtx(t, time.Minute)
	h, err := deploy.FindHelm(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.Template(ctx, "meshtrust", "meshtrust-system", []string{"metrics.prometheusRule.enabled=true"},
		"--show-only", "templates/prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rendered struct {
		Kind string         `json:"kind"`
		Spec map[string]any `json:"spec"`
	}
	if err := yaml.Unmarshal(out, &rendered); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, monitoring.RulesFile))
	if err != nil {
		t.Fatal(err)
	}
	var plain map[string]any
	if err := yaml.Unmarshal(data, &plain); err != nil {
		t.Fatal(err)
	}
	if rendered.Kind != "PrometheusRule" || len(plain) == 0 {
		t.Fatalf("rendered %q, rules file %d keys", rendered.Kind, len(plain))
	}
	if !equality.Semantic.DeepEqual(rendered.Spec, plain) {
		t.Fatalf("the PrometheusRule's spec differs from %s:\n%s", monitoring.RulesFile, out)
	}
	// An alert template must reach Prometheus as written, not be
	// rendered (or broken) by Helm.
	if !bytes.Contains(out, []byte("{{ $labels.namespace }}")) {
		t.Error("the rendered PrometheusRule lost the alert templates")
	}
}

// TestEveryAlertHasARunbookAndTests checks each alert's runbook_url points
// at a runbook entry in deploy/README.md named after it, that the entry
// exists, and that the promtool tests cover the alert both firing and not.
func TestEveryAlertHasARunbookAndTests(t *testing.T) {
	root, _ := repo(t)
	readme, err := os.ReadFile(filepath.Join(root, "deploy", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	entries := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(readme))
	for sc.Scan() {
		if name, ok := strings.CutPrefix(sc.Text(), "#### "); ok {
			entries[strings.TrimSpace(name)] = true
		}
	}
	data, err := os.ReadFile(filepath.Join(root, monitoring.RulesTestFile))
	if err != nil {
		t.Fatal(err)
	}
	var unit struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(data, &unit); err != nil {
		t.Fatal(err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range unit.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	var alerts []string
	for _, r := range rules(t) {
		if r.Alert == "" {
			continue
		}
		alerts = append(alerts, r.Alert)
		if !entries[r.Alert] {
			t.Errorf("%s has no runbook: add a \"#### %s\" entry to deploy/README.md", r.Alert, r.Alert)
		}
		if want := "https://github.com/meshtrust/meshtrust/blob/main/deploy/README.md#" + strings.ToLower(r.Alert); r.Annotations["runbook_url"] != want {
			t.Errorf("%s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
		}
		if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("%s lacks a severity, summary or description", r.Alert)
		}
		if !fires[r.Alert] || !quiet[r.Alert] {
			t.Errorf("%s: promtool tests where it fires: %v, where it must not: %v; %s needs both", r.Alert, fires[r.Alert], quiet[r.Alert], monitoring.RulesTestFile)
		}
	}
	for name := range entries {
		if strings.HasPrefix(name, "Meshtrust") && !slices.Contains(alerts, name) {
			t.Errorf("deploy/README.md has a runbook for %s, which no rule defines", name)
		}
	}
}
