package deploy_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
)

// TestControllerAcceptsChartArgs runs the real meshtrust-controller binary
// with the arguments every toggle renders, followed by --help: the binary
// parses every flag first, so it exits 0 only if each flag exists and each
// value parses. This is what keeps the chart and cmd/meshtrust-controller
// from drifting apart.
func TestControllerAcceptsChartArgs(t *testing.T) {
	root := helm(t).RepoRoot
	bin := filepath.Join(t.TempDir(), "meshtrust-controller")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/meshtrust-controller")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building meshtrust-controller: %v\n%s", err, out)
	}
	for _, tg := range toggles {
		t.Run(tg.name, func(t *testing.T) {
			objs := render(t, "meshtrust", "meshtrust-system", tg.set...)
			d := convert[appsv1.Deployment](t, ofKind(objs, "Deployment")[0])
			args := append(append([]string{}, d.Spec.Template.Spec.Containers[0].Args...), "--help")
			cmd := exec.CommandContext(testCtx(t, time.Minute), bin, args...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("meshtrust-controller refused the chart's arguments (%v): %s\nargs: %s", err, parseErrors(string(out)), strings.Join(args, " "))
			}
		})
	}
}

// parseErrors keeps pflag's error lines and drops the usage text.
func parseErrors(out string) string {
	var errs []string
	for _, l := range strings.Split(out, "\n") {
		if l != "" && !strings.HasPrefix(l, " ") && !strings.HasPrefix(l, "Usage of") {
			errs = append(errs, l)
		}
	}
	return strings.Join(errs, "\n")
}
