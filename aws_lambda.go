//go:build lambda.norpc

// aws_lambda.go is the SDK configuration of the Lambda build (-tags
// lambda.norpc, bootstrap.sh zip): from the environment only, as Lambda sets
// it, so the SDK's default chain is not in the binary.

package main

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// awsOption: this build takes none.
type awsOption = func(*struct{}) error

// loadAWS is the configuration for service in region ("" for AWS_REGION),
// from the environment.
func loadAWS(_ context.Context, region, service string, _ ...awsOption) (aws.Config, error) {
	c, err := envAWS(os.Getenv, region, service)
	if err != nil {
		return aws.Config{}, fmt.Errorf("%w (this is the Lambda build, -tags lambda.norpc, which reads AWS credentials from the environment only, as Lambda sets them; go build without that tag has the SDK's full chain: profiles, SSO, instance roles)", err)
	}
	return c, nil
}
