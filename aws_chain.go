//go:build !lambda.norpc

// aws_chain.go is the SDK configuration of every build but Lambda's: the
// SDK's default chain (environment, shared files and profiles, SSO, web
// identity, container and instance roles).

package main

import (
	"context"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
)

// awsOption is an option of the SDK's default chain (tests pass region and
// credentials for DynamoDB Local).
type awsOption = func(*awsconfig.LoadOptions) error

// loadAWS is the configuration for service in region ("" for the
// configured one): under Lambda, with no options, from its environment;
// otherwise from the SDK's default chain.
func loadAWS(ctx context.Context, region, service string, opts ...awsOption) (aws.Config, error) {
	if os.Getenv("AWS_LAMBDA_FUNCTION_NAME") != "" && len(opts) == 0 {
		if c, err := envAWS(os.Getenv, region, service); err == nil {
			return c, nil
		}
	}
	if region != "" {
		opts = append(opts, awsconfig.WithRegion(region))
	}
	c, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	// The SDK's service clients read their own endpoint variable; the
	// Secrets Manager call (secrets.go) is not one, so it is set here.
	if url := endpointURL(os.Getenv, service); err == nil && url != "" {
		c.BaseEndpoint = &url
	}
	return c, err
}
