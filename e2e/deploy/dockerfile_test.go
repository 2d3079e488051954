package deploy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

// No container engine runs in CI, so the image is never built there. This
// test checks what can be checked without one: the build stage copies every
// directory the controller's packages come from, the binary builds without
// cgo (so it runs on a static base), and the final stage runs as the
// non-root user the chart's securityContext names.
func TestDockerfile(t *testing.T) {
	root := helm(t).RepoRoot
	data, err := os.ReadFile(filepath.Join(root, "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var stages []string // FROM lines
	copied := map[string]bool{}
	var final []string // instructions of the last stage
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(line, "#") {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			stages = append(stages, line)
			final = nil
		case "COPY":
			if len(stages) == 1 && !strings.HasPrefix(fields[1], "--") {
				for _, src := range fields[1 : len(fields)-1] {
					copied[strings.TrimSuffix(src, "/")] = true
				}
			}
		}
		final = append(final, line)
	}
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, got stages %v", stages)
	}
	if last := stages[len(stages)-1]; !strings.Contains(last, "gcr.io/distroless/static") || !strings.HasSuffix(last, ":nonroot") {
		t.Errorf("final base %q is not distroless static, non-root", last)
	}
	if !bytes.Contains(data, []byte("CGO_ENABLED=0")) {
		t.Error("the build does not disable cgo, so the binary may need libc")
	}

	objs := render(t, "meshtrust", "meshtrust-system")
	d := convert[appsv1.Deployment](t, ofKind(objs, "Deployment")[0])
	uid := *d.Spec.Template.Spec.SecurityContext.RunAsUser
	wantUser := fmt.Sprintf("USER %d:%d", uid, uid)
	found := false
	for _, l := range final {
		found = found || l == wantUser
	}
	if !found {
		t.Errorf("final stage lacks %q, the uid the chart runs as (numeric, so the kubelet can verify runAsNonRoot)", wantUser)
	}

	// Every meshtrust package the controller links must come from a copied
	// directory, and none may need cgo.
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}} {{len .CgoFiles}}{{end}}", "./cmd/meshtrust-controller")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const module = "github.com/meshtrust/meshtrust/"
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, cgo, _ := strings.Cut(line, " ")
		if cgo != "0" {
			t.Errorf("package %s needs cgo", pkg)
		}
		if rel, ok := strings.CutPrefix(pkg, module); ok {
			top, _, _ := strings.Cut(rel, "/")
			if !copied[top] {
				t.Errorf("package %s is in %s/, which the build stage does not COPY", pkg, top)
			}
		}
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		if !copied[f] {
			t.Errorf("the build stage does not COPY %s", f)
		}
	}
}
