package monitoring_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/e2e/monitoring"
)

var (
	toolsOnce sync.Once
	tools     *monitoring.Tools
	toolsErr  error
	rootDir   string
)

// repo returns the repository root and the Prometheus binaries, failing t
// when either is missing.
func repo(t testing.TB) (string, *monitoring.Tools) {
	t.Helper()
	toolsOnce.Do(func() {
		if rootDir, toolsErr = lab.RepoRoot(); toolsErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		tools, toolsErr = monitoring.FindTools(ctx, rootDir)
	})
	if toolsErr != nil {
		t.Fatal(toolsErr)
	}
	return rootDir, tools
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// startPrometheus starts a server for t in a directory of its own, and
// stops it when t ends; its log is kept if t fails.
func startPrometheus(t testing.TB, cfg monitoring.ServerConfig) *monitoring.Server {
	t.Helper()
	_, tl := repo(t)
	dir, err := os.MkdirTemp("", "meshtrust-prometheus-")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dir = dir
	s, err := monitoring.StartServer(testCtx(t, 2*time.Minute), tl.Prometheus, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("prometheus log kept: %s", s.LogPath)
			return
		}
		os.RemoveAll(dir)
	})
	return s
}

// Rule is one rule of a Prometheus rules file.
type Rule struct {
	Alert       string            `json:"alert"`
	Record      string            `json:"record"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// RuleGroups is a rules file, and a PrometheusRule's spec.
type RuleGroups struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []Rule `json:"rules"`
	} `json:"groups"`
}

// rules reads the chart's rules file.
func rules(t testing.TB) []Rule {
	t.Helper()
	root, _ := repo(t)
	data, err := os.ReadFile(filepath.Join(root, monitoring.RulesFile))
	if err != nil {
		t.Fatal(err)
	}
	var g RuleGroups
	if err := yaml.UnmarshalStrict(data, &g); err != nil {
		t.Fatalf("%s: %v", monitoring.RulesFile, err)
	}
	var out []Rule
	for _, grp := range g.Groups {
		out = append(out, grp.Rules...)
	}
	if len(out) == 0 {
		t.Fatalf("no rules in %s", monitoring.RulesFile)
	}
	return out
}

func ruleName(r Rule) string {
	if r.Alert != "" {
		return r.Alert
	}
	return fmt.Sprintf("record %s", r.Record)
}
