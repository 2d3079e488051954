// Package conditionmetric exports Kubernetes status conditions as Prometheus
// series, the way kube-state-metrics and cert-manager do: one series per
// possible status (True, False, Unknown), 1 for the current one and 0 for
// the others. An alert then selects `{condition="False"} == 1`.
//
// The series are computed from the manager's cache when Prometheus scrapes,
// not set by a reconciler: an object that is deleted, or stops opting in,
// drops out of the next scrape, and no series outlives what it describes.
package conditionmetric

import (
	"context"
	"errors"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
)

// Statuses are the values of the condition label, in the order emitted.
var Statuses = []metav1.ConditionStatus{metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown}

// ConditionLabel is the label that carries the status.
const ConditionLabel = "condition"

// listTimeout bounds one scrape's read of the cache. Reads are in memory;
// only an informer that has not synced yet can make them wait.
const listTimeout = 10 * time.Second

// Object is one object's identity (label values in the order of the
// collector's label names) and the status of its condition.
type Object struct {
	Labels []string
	// Status is the condition's status; empty (no such condition yet)
	// counts as Unknown.
	Status metav1.ConditionStatus
}

// Lister reads the objects to report, from a cache.
type Lister func(ctx context.Context) ([]Object, error)

type collector struct {
	name string
	desc *prometheus.Desc
	list Lister
	log  logr.Logger
}

// NewCollector returns a collector of the metric name, with labels
// labelNames plus ConditionLabel, fed by list at every scrape. A failed read
// is logged and leaves the metric out of that scrape; it never fails the
// scrape, which would hide every other metric.
func NewCollector(name, help string, labelNames []string, list Lister, log logr.Logger) prometheus.Collector {
	labels := append(append([]string{}, labelNames...), ConditionLabel)
	return &collector{name: name, desc: prometheus.NewDesc(name, help, labels, nil), list: list, log: log}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	// prometheus.Collector passes no context; the scrape's own timeout
	// is on the HTTP side.
	ctx, cancel := context.WithTimeout(context.Background(), listTimeout)
	defer cancel()
	objs, err := c.list(ctx)
	if err != nil {
		var notStarted *cache.ErrCacheNotStarted
		if !errors.As(err, &notStarted) {
			c.log.Error(err, "reading objects for a condition metric; left out of this scrape", "metric", c.name)
		}
		return
	}
	for _, o := range objs {
		for _, s := range Statuses {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, Value(o.Status, s), append(append([]string{}, o.Labels...), string(s))...)
		}
	}
}

// Value is the series value for the status label s of an object whose
// condition has status current: 1 when they match, else 0. A missing
// condition, or a status outside the three, reads as Unknown.
func Value(current, s metav1.ConditionStatus) float64 {
	if current != metav1.ConditionTrue && current != metav1.ConditionFalse {
		current = metav1.ConditionUnknown
	}
	if current == s {
		return 1
	}
	return 0
}
