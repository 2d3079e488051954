package monitoring_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrust/meshtrust/cmd/meshtrust-controller/app"
	"github.com/meshtrust/meshtrust/e2e/monitoring"
)

// prometheusOwn are series Prometheus itself makes, which rules and
// dashboards may name.
var prometheusOwn = []string{"up", "ALERTS"}

// TestRulesAndDashboardNameOnlyRegisteredMetrics: every metric that a rule
// or a dashboard query names is one meshtrust-controller registers, so that
// a renamed or removed metric cannot leave a rule that never fires or a
// panel that shows nothing. The names registered come from the collectors
// the manager (app.NewManager, what the binary runs) registers; the names
// used come from Prometheus's own parser.
func TestRulesAndDashboardNameOnlyRegisteredMetrics(t *testing.T) {
	registered := registeredMetrics(t)
	srv := startPrometheus(t, monitoring.ServerConfig{ScrapeInterval: time.Minute, EvaluationInterval: time.Minute})
	ctx := testCtx(t, 2*time.Minute)

	exprs := map[string]string{} // what -> PromQL
	for _, r := range rules(t) {
		exprs["rule "+ruleName(r)] = r.Expr
	}
	for what, expr := range dashboardQueries(t) {
		exprs[what] = expr
	}
	used := map[string]bool{}
	for what, expr := range exprs {
		names, err := srv.MetricNames(ctx, expr)
		if err != nil {
			t.Errorf("%s: %v", what, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s selects no metric: %s", what, expr)
		}
		for _, n := range names {
			used[n] = true
			for _, suffix := range histogramSuffixes {
				used[strings.TrimSuffix(n, suffix)] = true
			}
			if !known(n, registered) {
				t.Errorf("%s names %s, which meshtrust-controller does not register", what, n)
			}
		}
	}

	// The check can fail: a name nobody registers is caught the same way.
	names, err := srv.MetricNames(ctx, `rate(meshtrust_no_such_metric_total[5m]) > 0`)
	if err != nil || len(names) != 1 || known(names[0], registered) {
		t.Errorf("an unregistered metric was not caught: names %v, err %v", names, err)
	}

	var unused []string
	for n := range registered {
		if !used[n] && strings.HasPrefix(n, "meshtrust_") {
			unused = append(unused, n)
		}
	}
	sort.Strings(unused)
	t.Logf("%d expressions; meshtrust metrics registered but in no rule or panel: %v", len(exprs), unused)
}

var histogramSuffixes = []string{"_bucket", "_sum", "_count"}

// known reports whether the metric name is registered or Prometheus's
// own; a histogram's _bucket, _sum and _count series count as its name.
func known(name string, registered map[string]bool) bool {
	if registered[name] || slices.Contains(prometheusOwn, name) {
		return true
	}
	for _, suffix := range histogramSuffixes {
		if base, ok := strings.CutSuffix(name, suffix); ok && registered[base] {
			return true
		}
	}
	return false
}

// registeredMetrics builds meshtrust-controller's manager with the binary's
// defaults (issuer and syncer on) against a lab cluster, and returns every
// metric name its collectors describe. The manager is not started.
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	c := labFor(t).Clusters[0]
	rec := &recordingRegisterer{Registerer: prometheus.NewRegistry(), names: map[string]bool{}}
	opts := app.DefaultOptions()
	opts.InProcess = true
	opts.MetricsRegistry = rec
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := app.NewManager(ctx, c.Config, opts); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.names) == 0 {
		t.Fatal("the manager registered no metrics")
	}
	return rec.names
}

// recordingRegisterer passes registrations on and records the name of
// every metric the registered collectors describe.
type recordingRegisterer struct {
	prometheus.Registerer
	mu    sync.Mutex
	names map[string]bool
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	descs := make(chan *prometheus.Desc)
	go func() {
		c.Describe(descs)
		close(descs)
	}()
	r.mu.Lock()
	defer r.mu.Unlock()
	for d := range descs {
		// Desc has no accessor for its name; its String form carries it.
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			return fmt.Errorf("cannot read a metric name from %s", d)
		}
		r.names[m[1]] = true
	}
	return r.Registerer.Register(c)
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// grafanaVariables are the dashboard's Grafana variables and the values
// they are replaced with before Prometheus parses a query.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// dashboardQueries returns every panel query of the dashboard, by panel,
// with Grafana's variables replaced. It also checks the dashboard's shape.
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	d := readDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q title %q", d.UID, d.Title)
	}
	if !slices.ContainsFunc(d.Templating.List, func(v variable) bool {
		return v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus"
	}) {
		t.Error("the dashboard has no Prometheus data-source variable")
	}
	out := map[string]string{}
	ids := map[int]bool{}
	for _, p := range d.allPanels() {
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.GridPos.X+p.GridPos.W > 24 || p.GridPos.W <= 0 || p.GridPos.H <= 0 {
			t.Errorf("panel %q: grid position %+v", p.Title, p.GridPos)
		}
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q uses data source %q, not the dashboard's variable", p.Title, p.Datasource.UID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			expr := grafanaVariables.Replace(tg.Expr)
			if strings.Contains(expr, "$") {
				t.Errorf("panel %q: unknown variable in %s", p.Title, tg.Expr)
			}
			out[fmt.Sprintf("panel %q query %s", p.Title, tg.RefID)] = expr
		}
	}
	return out
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	root, _ := repo(t)
	data, err := os.ReadFile(filepath.Join(root, monitoring.DashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", monitoring.DashboardFile, err)
	}
	return d
}

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type variable struct {
	Name, Type, Query string
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct {
		X, Y, W, H int
	} `json:"gridPos"`
	FieldConfig struct {
		Defaults struct {
			Unit     string `json:"unit"`
			Mappings []struct {
				Options map[string]struct {
					Text  string `json:"text"`
					Color string `json:"color"`
				} `json:"options"`
			} `json:"mappings"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []struct {
		RefID        string `json:"refId"`
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

func (d dashboard) allPanels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}
