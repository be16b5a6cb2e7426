// Command otel runs one AgentPass flow with OpenTelemetry installed and
// prints the spans and metrics it recorded.
//
// # Overview
//
// The SDK uses the OpenTelemetry API only; the application chooses the SDK
// and exporter. This example builds a TracerProvider and a MeterProvider
// with the stdout exporters, gives them to every Authority and the Service
// (their Config.TracerProvider and Config.MeterProvider; left nil, the
// roles use otel's global providers), and traces their outbound calls with
// otelhttp through Config.WrapTransport, the hook that keeps the outbound
// address and TLS checks in place. A Harness then acquires a pass, redeems
// it and calls the to-do Service on loopback (real TLS, real DNS,
// in-memory stores).
//
// Spans and metric points carry the user's domain, agent, task, authority
// and a hash of the authorization id, never a pass, token, key or e-mail
// address.
//
// # Usage
//
//	go run ./examples/otel
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentpass-go/agentpass/examples/internal/sandbox"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/pass"
)

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "otel example FAILED: %v\n", err)
		os.Exit(1)
	}
}

// run wires the stdout exporters and runs the flow.
func run(out io.Writer) (err error) {
	spans, err := stdouttrace.New(stdouttrace.WithWriter(out))
	if err != nil {
		return err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	points, err := stdoutmetric.New(stdoutmetric.WithWriter(out))
	if err != nil {
		return err
	}
	reader := sdkmetric.NewPeriodicReader(points, sdkmetric.WithInterval(time.Hour))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	// Shutting down flushes the last spans and metric points.
	defer func() {
		ctx := context.Background()
		err = errors.Join(err, tp.Shutdown(ctx), mp.Shutdown(ctx))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	status, err := flow(ctx, tp, mp)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "GET /api/todos with the redeemed token: %d\n", status)
	return nil
}

// flow runs an acquisition, a redemption and an API call against a sandbox
// whose roles record to tp and mp, and returns the API call's status.
func flow(ctx context.Context, tp trace.TracerProvider, mp metric.MeterProvider) (int, error) {
	n, err := testnet.Start()
	if err != nil {
		return 0, err
	}
	defer n.Close()
	// otelhttp traces every outbound call of the roles (validation,
	// authorization checks, SET pushes, scope discovery) as a client span
	// under the span of the request that made it.
	wrap := func(rt http.RoundTripper) http.RoundTripper {
		return otelhttp.NewTransport(rt, otelhttp.WithTracerProvider(tp), otelhttp.WithMeterProvider(mp))
	}
	sb, err := sandbox.Build(n, sandbox.Options{TracerProvider: tp, MeterProvider: mp, WrapTransport: wrap})
	if err != nil {
		return 0, err
	}
	agent, err := harness.New(harness.Config{
		HarnessID:                    "otel-example-agent",
		HTTPClient:                   n.Client(),
		InsecureAllowPrivateNetworks: true, // every party listens on loopback
		Discovery:                    n.Discovery(),
		TracerProvider:               tp,
		MeterProvider:                mp,
		WrapTransport:                wrap,
	})
	if err != nil {
		return 0, err
	}
	// The Enterprise Authority's policy approves a read-only task at once.
	g, err := agent.Acquire(ctx, harness.Request{
		Service: sb.TodoOrigin, User: sandbox.UserEnterprise, Type: pass.BearerToken,
		Task: pass.Task{Description: "Summarise my to-do list"},
	})
	if err != nil {
		return 0, err
	}
	tok, err := agent.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sb.TodoOrigin+"/api/todos", nil)
	if err != nil {
		return 0, err
	}
	resp, err := tok.HTTPClient(n.Client()).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, nil
}
