package main

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// TestEnvAWS: Lambda's environment gives the region, the role's
// credentials and an endpoint override, or an error naming what is missing.
func TestEnvAWS(t *testing.T) {
	t.Parallel()
	lambdaEnv := map[string]string{"AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "SECRET", "AWS_SESSION_TOKEN": "TOKEN"}
	tests := []struct {
		name             string
		env              map[string]string
		region, endpoint string // want
		missing          []string
	}{
		{name: "Lambda's variables", env: lambdaEnv, region: "eu-west-1"},
		{name: "AWS_DEFAULT_REGION", env: with(lambdaEnv, "AWS_REGION", "", "AWS_DEFAULT_REGION", "us-west-2"), region: "us-west-2"},
		{name: "the service's endpoint", env: with(lambdaEnv, "AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000", "AWS_ENDPOINT_URL", "http://other"),
			region: "eu-west-1", endpoint: "http://127.0.0.1:8000"},
		{name: "the general endpoint", env: with(lambdaEnv, "AWS_ENDPOINT_URL", "http://other"), region: "eu-west-1", endpoint: "http://other"},
		{name: "endpoints ignored", env: with(lambdaEnv, "AWS_ENDPOINT_URL", "http://other", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"), region: "eu-west-1"},
		{name: "nothing", env: nil, missing: []string{"AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}},
		{name: "no secret key", env: with(lambdaEnv, "AWS_SECRET_ACCESS_KEY", ""), missing: []string{"AWS_SECRET_ACCESS_KEY"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := envAWS(fakeEnv(tt.env), "", "DYNAMODB")
			if tt.missing != nil {
				for _, name := range tt.missing {
					if err == nil || !strings.Contains(err.Error(), name) {
						t.Errorf("error %v; want it to name %s", err, name)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Region != tt.region {
				t.Errorf("region %q, want %q", c.Region, tt.region)
			}
			if got := aws.ToString(c.BaseEndpoint); got != tt.endpoint {
				t.Errorf("endpoint %q, want %q", got, tt.endpoint)
			}
			cr, err := c.Credentials.Retrieve(context.Background())
			if err != nil || cr.AccessKeyID != "AKID" || cr.SecretAccessKey != "SECRET" || cr.SessionToken != "TOKEN" {
				t.Errorf("credentials %+v, %v; want Lambda's", cr, err)
			}
		})
	}
	// A region given (a secret's ARN names one) beats the environment's.
	if c, err := envAWS(fakeEnv(lambdaEnv), "ap-south-1", "SECRETS_MANAGER"); err != nil || c.Region != "ap-south-1" {
		t.Errorf("region %q, %v; want ap-south-1", c.Region, err)
	}
}
