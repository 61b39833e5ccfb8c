// demo_lambda.go keeps the demo (and its in-process Kafka) out of the Lambda
// build, where it would only add to the zip.

//go:build lambda.norpc

package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
)

func runDemo(ctx context.Context, w io.Writer, log *slog.Logger) error {
	return runDemoWith(ctx, w, log, action)
}

func runDemoWith(context.Context, io.Writer, *slog.Logger, actionFunc) error {
	return errors.New("the demo is not in the Lambda build (-tags lambda.norpc): go run . runs it")
}
