package conditionmetric_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/meshtrust/meshtrust/internal/conditionmetric"
)

func TestValue(t *testing.T) {
	for _, tc := range []struct {
		current             metav1.ConditionStatus
		wantTrue, wantFalse float64
		wantUnknown         float64
	}{
		{metav1.ConditionTrue, 1, 0, 0},
		{metav1.ConditionFalse, 0, 1, 0},
		{metav1.ConditionUnknown, 0, 0, 1},
		{"", 0, 0, 1},      // no condition yet
		{"Maybe", 0, 0, 1}, // not a status Kubernetes defines
	} {
		got := []float64{
			conditionmetric.Value(tc.current, metav1.ConditionTrue),
			conditionmetric.Value(tc.current, metav1.ConditionFalse),
			conditionmetric.Value(tc.current, metav1.ConditionUnknown),
		}
		want := []float64{tc.wantTrue, tc.wantFalse, tc.wantUnknown}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("status %q: series %s = %v, want %v", tc.current, conditionmetric.Statuses[i], got[i], want[i])
			}
		}
	}
}

func TestCollectorExportsEveryObject(t *testing.T) {
	c := conditionmetric.NewCollector("test_ready_status", "Help.", []string{"namespace", "name"},
		func(context.Context) ([]conditionmetric.Object, error) {
			return []conditionmetric.Object{
				{Labels: []string{"a", "ready"}, Status: metav1.ConditionTrue},
				{Labels: []string{"b", "new"}},
			}, nil
		}, logr.Discard())
	want := `# HELP test_ready_status Help.
# TYPE test_ready_status gauge
test_ready_status{condition="False",name="new",namespace="b"} 0
test_ready_status{condition="False",name="ready",namespace="a"} 0
test_ready_status{condition="True",name="new",namespace="b"} 0
test_ready_status{condition="True",name="ready",namespace="a"} 1
test_ready_status{condition="Unknown",name="new",namespace="b"} 1
test_ready_status{condition="Unknown",name="ready",namespace="a"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

// A read that fails leaves the metric out of the scrape instead of failing
// it, and says so in the log, except while the cache is still starting.
func TestCollectorSkipsFailedReads(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		wantLog bool
	}{
		{"read error", errors.New("informer not synced"), true},
		{"cache not started", &cache.ErrCacheNotStarted{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logged []string
			log := funcr.New(func(prefix, args string) { logged = append(logged, args) }, funcr.Options{})
			c := conditionmetric.NewCollector("test_ready_status", "Help.", []string{"name"},
				func(context.Context) ([]conditionmetric.Object, error) { return nil, tc.err }, log)
			if n := testutil.CollectAndCount(c); n != 0 {
				t.Errorf("%d series after a failed read, want none", n)
			}
			if got := len(logged) > 0; got != tc.wantLog {
				t.Errorf("logged %v, want a log line: %v", logged, tc.wantLog)
			}
			if tc.wantLog && !strings.Contains(strings.Join(logged, ""), "test_ready_status") {
				t.Errorf("log %v does not name the metric", logged)
			}
		})
	}
}
