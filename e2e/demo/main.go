// Command demo tells meshtrust's federation story on the local lab: Vault
// and three clusters (kind1, kind2, kind3) with cert-manager and istiod,
// all real processes on 127.0.0.1. See e2e/federation for what each step
// proves.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"google.golang.org/grpc/grpclog"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/meshtrust/meshtrust/e2e/federation"
	"github.com/meshtrust/meshtrust/e2e/lab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	passed, err := run(ctx, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	if !passed {
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer) (bool, error) {
	root, err := lab.RepoRoot()
	if err != nil {
		return false, err
	}
	base := filepath.Join(root, "bin", "demo")
	if err := os.MkdirAll(base, 0o755); err != nil {
		return false, err
	}
	dir, err := os.MkdirTemp(base, "lab-")
	if err != nil {
		return false, err
	}
	exportDir := os.Getenv("DEMO_EXPORT")
	if exportDir == "" {
		exportDir = filepath.Join(base, "cacerts")
	}

	// Component logs go to files; the terminal gets one line per step.
	logPath := filepath.Join(dir, "meshtrust-controllers.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return false, err
	}
	defer logFile.Close()
	logger := zap.New(zap.WriteTo(logFile))
	ctrl.SetLogger(logger)
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	_ = klogFlags.Set("logtostderr", "false")
	_ = klogFlags.Set("alsologtostderr", "false")
	_ = klogFlags.Set("stderrthreshold", "FATAL")
	klog.SetOutput(logFile)
	// The workloads' gRPC connections to istiod log reconnects.
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(logFile, logFile, logFile))
	fmt.Fprintf(out, "meshtrust demo; controller and client logs: %s\n", logPath)

	result, err := federation.Run(ctx, federation.Config{Out: out, Dir: dir, ExportDir: exportDir, Logger: logger})
	fmt.Fprintln(out)
	result.WriteSummary(out)
	if err != nil {
		return false, err
	}
	return result.Passed(), nil
}
