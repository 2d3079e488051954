package federation

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

// TestFederation runs the whole demo story against the lab, a real istiod
// in every cluster, and requires every one of its checks to pass.
func TestFederation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var out strings.Builder
	dir := t.TempDir()
	result, err := Run(ctx, Config{Out: &out, Dir: dir, ExportDir: t.TempDir(), Logger: logr.Discard()})
	var summary strings.Builder
	result.WriteSummary(&summary)
	if err != nil || !result.Passed() {
		t.Fatalf("federation story failed: %v\n%s\n%s", err, out.String(), summary.String())
	}
	want := []string{
		"istiods run their trust domains, the others as aliases",
		"before: workloads of self-signed istiods refuse each other",
		"same root, different intermediates",
		"istiod signs with meshtrust's intermediate",
		"status healthy, 2×2 trust matrix all yes",
		"cross-cluster mTLS with secure naming",
		"name constraint stops a forged identity",
		"live rotation: istiod reloads, zero failures",
		"late joiner's istiod signs with its intermediate",
		"status healthy, 3×3 trust matrix all yes",
		"late joiner: cross-cluster mTLS from kind1's istiod",
		"joining does not disturb members",
		"cacerts exported as istiod mounts them",
		"a compromised cluster's workloads are refused mesh-wide",
		"the others keep talking after the revocation",
		"after the revocation: status names kind1's intermediate revoked",
	}
	if len(result.Checks) != len(want) {
		t.Fatalf("ran %d checks, want %d:\n%s", len(result.Checks), len(want), summary.String())
	}
	for i, c := range result.Checks {
		if c.Name != want[i] {
			t.Errorf("check %d is %q, want %q", i, c.Name, want[i])
		}
	}
	t.Logf("\n%s", summary.String())
}
