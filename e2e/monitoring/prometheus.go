package monitoring

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/meshtrust/meshtrust/e2e/deploy"
)

// Paths of the chart's monitoring files, relative to the repository root.
const (
	RulesFile     = "deploy/charts/meshtrust/files/meshtrust-alerts.yaml"
	DashboardFile = "deploy/charts/meshtrust/files/meshtrust-dashboard.json"
	RulesTestFile = "e2e/monitoring/testdata/alerts_test.yaml"
)

// Tools are the Prometheus binaries `make prometheus` (part of `make test`)
// builds into bin/tools/<name>-<version>/.
type Tools struct {
	Prometheus, Promtool string
}

// FindTools locates them, the version being github.com/prometheus/prometheus's
// in e2e/tools/prometheus/go.mod. A missing binary is an error that says how
// to build it, never a skip.
func FindTools(ctx context.Context, repoRoot string) (*Tools, error) {
	paths, err := deploy.FindTools(ctx, repoRoot, "prometheus", "github.com/prometheus/prometheus", "prometheus", "promtool")
	if err != nil {
		return nil, err
	}
	return &Tools{Prometheus: paths[0], Promtool: paths[1]}, nil
}

// ServerConfig is what a Server scrapes and evaluates.
type ServerConfig struct {
	// Dir holds the configuration, the TSDB and the log.
	Dir string
	// ScrapeInterval and EvaluationInterval are Prometheus's global ones.
	ScrapeInterval, EvaluationInterval time.Duration
	// Targets are host:port addresses scraped at /metrics as job "meshtrust".
	Targets []string
	// RuleFiles are loaded as rule_files.
	RuleFiles []string
}

// Server is a Prometheus server process listening on 127.0.0.1.
type Server struct {
	// URL is the server's base URL, http://127.0.0.1:<port>.
	URL string
	// LogPath receives the server's output.
	LogPath string

	cmd    *exec.Cmd
	done   chan struct{}
	client *http.Client
}

// StartServer writes cfg's prometheus.yml and starts binary, returning once
// the server reports ready. The process gets SIGKILL if this process dies.
func StartServer(ctx context.Context, binary string, cfg ServerConfig) (*Server, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	config := fmt.Sprintf("global:\n  scrape_interval: %s\n  evaluation_interval: %s\n", cfg.ScrapeInterval, cfg.EvaluationInterval)
	config += "rule_files:" + yamlList(cfg.RuleFiles, "  ")
	config += "scrape_configs:\n  - job_name: meshtrust\n    static_configs:\n      - targets:" + yamlList(cfg.Targets, "          ")
	configPath := filepath.Join(cfg.Dir, "prometheus.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return nil, fmt.Errorf("writing the Prometheus config: %w", err)
	}
	s := &Server{
		URL:     "http://" + addr,
		LogPath: filepath.Join(cfg.Dir, "prometheus.log"),
		done:    make(chan struct{}),
		client:  &http.Client{Timeout: 10 * time.Second},
	}
	logFile, err := os.Create(s.LogPath)
	if err != nil {
		return nil, fmt.Errorf("creating the Prometheus log: %w", err)
	}
	s.cmd = exec.Command(binary,
		"--config.file="+configPath,
		"--storage.tsdb.path="+filepath.Join(cfg.Dir, "data"),
		"--web.listen-address="+addr,
	)
	s.cmd.Dir = cfg.Dir
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting prometheus: %w", err)
	}
	go func() {
		_ = s.cmd.Wait()
		logFile.Close()
		close(s.done)
	}()
	if err := s.waitReady(ctx); err != nil {
		return nil, errors.Join(err, s.Stop())
	}
	return s, nil
}

func yamlList(items []string, indent string) string {
	if len(items) == 0 {
		return " []\n"
	}
	out := "\n"
	for _, it := range items {
		out += indent + "- " + strconv.Quote(it) + "\n"
	}
	return out
}

func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/-/ready", nil)
		if err != nil {
			return err
		}
		if resp, err := s.client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("prometheus exited before it was ready (log: %s)", s.LogPath)
		case <-ctx.Done():
			return fmt.Errorf("waiting for prometheus at %s to be ready (log: %s): %w", s.URL, s.LogPath, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop stops the server with SIGTERM, then SIGKILL, and waits for it.
func (s *Server) Stop() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
		return nil
	case <-time.After(15 * time.Second):
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-s.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("prometheus (pid %d) did not exit after SIGKILL", s.cmd.Process.Pid)
	}
}

// Alert is one entry of /api/v1/alerts.
type Alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	// State is "pending" or "firing"; resolved alerts are not listed.
	State    string     `json:"state"`
	ActiveAt *time.Time `json:"activeAt"`
	Value    string     `json:"value"`
}

// Alerts lists the pending and firing alerts.
func (s *Server) Alerts(ctx context.Context) ([]Alert, error) {
	var data struct {
		Alerts []Alert `json:"alerts"`
	}
	if err := s.get(ctx, "/api/v1/alerts", nil, &data); err != nil {
		return nil, err
	}
	return data.Alerts, nil
}

// Sample is one series of an instant query's result.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// Query evaluates expr now and returns its vector.
func (s *Server) Query(ctx context.Context, expr string) ([]Sample, error) {
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := s.get(ctx, "/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("query %q: result type %q, want vector", expr, data.ResultType)
	}
	out := make([]Sample, 0, len(data.Result))
	for _, r := range data.Result {
		v, err := sampleValue(r.Value[1])
		if err != nil {
			return nil, fmt.Errorf("query %q: %w", expr, err)
		}
		out = append(out, Sample{Metric: r.Metric, Value: v})
	}
	return out, nil
}

// Point is one sample of a range query.
type Point struct {
	Time  time.Time
	Value float64
}

// Series is one series of a range query's result.
type Series struct {
	Metric map[string]string
	Points []Point
}

// QueryRange evaluates expr from start to end every step.
func (s *Server) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]Series, error) {
	var data struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
		} `json:"result"`
	}
	params := url.Values{
		"query": {expr},
		"start": {strconv.FormatFloat(float64(start.UnixMilli())/1000, 'f', 3, 64)},
		"end":   {strconv.FormatFloat(float64(end.UnixMilli())/1000, 'f', 3, 64)},
		"step":  {strconv.FormatFloat(step.Seconds(), 'f', 3, 64)},
	}
	if err := s.get(ctx, "/api/v1/query_range", params, &data); err != nil {
		return nil, err
	}
	out := make([]Series, 0, len(data.Result))
	for _, r := range data.Result {
		ser := Series{Metric: r.Metric}
		for _, pv := range r.Values {
			ts, ok := pv[0].(float64)
			if !ok {
				return nil, fmt.Errorf("query_range %q: timestamp %v", expr, pv[0])
			}
			v, err := sampleValue(pv[1])
			if err != nil {
				return nil, fmt.Errorf("query_range %q: %w", expr, err)
			}
			ser.Points = append(ser.Points, Point{Time: time.UnixMilli(int64(ts * 1000)), Value: v})
		}
		out = append(out, ser)
	}
	return out, nil
}

// MetricNames returns the metric names that expr selects, as Prometheus's
// own parser sees them (/api/v1/parse_query): the names of its vector and
// matrix selectors. A syntax error is an error.
func (s *Server) MetricNames(ctx context.Context, expr string) ([]string, error) {
	var ast any
	if err := s.get(ctx, "/api/v1/parse_query", url.Values{"query": {expr}}, &ast); err != nil {
		return nil, err
	}
	var names []string
	var walk func(any)
	walk = func(n any) {
		switch n := n.(type) {
		case map[string]any:
			if typ, _ := n["type"].(string); typ == "vectorSelector" || typ == "matrixSelector" {
				name, _ := n["name"].(string)
				if name == "" {
					name = nameMatcher(n["matchers"])
				}
				names = append(names, name)
			}
			for _, v := range n {
				walk(v)
			}
		case []any:
			for _, v := range n {
				walk(v)
			}
		}
	}
	walk(ast)
	return names, nil
}

// nameMatcher is the value of an equality matcher on __name__, "" if none.
func nameMatcher(matchers any) string {
	list, _ := matchers.([]any)
	for _, m := range list {
		mm, _ := m.(map[string]any)
		if mm["name"] == "__name__" && mm["type"] == "=" {
			v, _ := mm["value"].(string)
			return v
		}
	}
	return ""
}

// get reads a Prometheus API response into data.
func (s *Server) get(ctx context.Context, path string, params url.Values, data any) error {
	u := s.URL + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("prometheus %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("prometheus %s: reading the response: %w", path, err)
	}
	var envelope struct {
		Status    string          `json:"status"`
		Data      json.RawMessage `json:"data"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
	}
	if err := json.Unmarshal(body, &envelope); err != nil {
		return fmt.Errorf("prometheus %s: HTTP %d: %.200s", path, resp.StatusCode, body)
	}
	if envelope.Status != "success" {
		return fmt.Errorf("prometheus %s: %s: %s", path, envelope.ErrorType, envelope.Error)
	}
	if err := json.Unmarshal(envelope.Data, data); err != nil {
		return fmt.Errorf("prometheus %s: decoding data: %w", path, err)
	}
	return nil
}

// sampleValue decodes the string Prometheus's JSON gives a sample value in.
func sampleValue(v any) (float64, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("sample value %v is not a string", v)
	}
	return strconv.ParseFloat(s, 64)
}

// FreeAddr returns 127.0.0.1:<a port that is free now>.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}
