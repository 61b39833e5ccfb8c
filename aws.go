// aws.go holds the AWS SDK configuration of baton's clients (DynamoDB,
// Secrets Manager, MSK IAM). Under Lambda it is read from the environment
// Lambda sets, without the SDK's default chain: that chain's packages (SSO,
// STS, IMDS, shared files) cost a cold start about a millisecond of package
// initializers, and the Lambda build leaves them out (aws_lambda.go);
// elsewhere the chain is used (aws_chain.go).

package main

import (
	"cmp"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// envAWS is the configuration Lambda's environment gives for service (its
// AWS_ENDPOINT_URL_ suffix, like DYNAMODB): the region (region, else
// AWS_REGION or AWS_DEFAULT_REGION), the function role's credentials
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) and an
// endpoint override as the SDK reads it (AWS_ENDPOINT_URL_service, else
// AWS_ENDPOINT_URL, unless AWS_IGNORE_CONFIGURED_ENDPOINT_URLS). The error
// names what is missing.
func envAWS(getenv func(string) string, region, service string) (aws.Config, error) {
	region = cmp.Or(region, getenv("AWS_REGION"), getenv("AWS_DEFAULT_REGION"))
	id, key := getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY")
	var missing []string
	for _, v := range [][2]string{{"AWS_REGION", region}, {"AWS_ACCESS_KEY_ID", id}, {"AWS_SECRET_ACCESS_KEY", key}} {
		if v[1] == "" {
			missing = append(missing, v[0])
		}
	}
	if len(missing) > 0 {
		return aws.Config{}, fmt.Errorf("not set in the environment: %s", strings.Join(missing, ", "))
	}
	c := aws.Config{Region: region, Credentials: credentials.NewStaticCredentialsProvider(id, key, getenv("AWS_SESSION_TOKEN"))}
	if url := endpointURL(getenv, service); url != "" {
		c.BaseEndpoint = &url
	}
	return c, nil
}

// endpointURL is the endpoint override the environment gives for service,
// as the SDK reads it: AWS_ENDPOINT_URL_service, else AWS_ENDPOINT_URL,
// unless AWS_IGNORE_CONFIGURED_ENDPOINT_URLS; "" for none.
func endpointURL(getenv func(string) string, service string) string {
	if strings.EqualFold(getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"), "true") {
		return ""
	}
	return cmp.Or(getenv("AWS_ENDPOINT_URL_"+service), getenv("AWS_ENDPOINT_URL"))
}
