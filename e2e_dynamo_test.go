//go:build e2e && !redis

// e2e_dynamo_test.go gives the end-to-end tests the DynamoDB lease store:
// DynamoDB Local (BATON_TEST_DYNAMO), a table of the test's own that the
// binary creates itself (BATON_CREATE_TABLE=true).

package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// e2eBuildTags are the tags the binary is built with for this store.
const e2eBuildTags = "lambda.norpc"

// e2eLeaseStore is the environment that points the binary at a fresh lease
// table, and a store on that table for the test to read the records.
func e2eLeaseStore(t *testing.T) (env []string, s store) {
	t.Helper()
	url := needServer(t, "BATON_TEST_DYNAMO")
	table := fmt.Sprintf("baton-e2e-%d", time.Now().UnixNano())
	// DynamoDB Local keeps one database per access key and region unless it
	// runs with -sharedDb: the binary and the test use the same dummy ones.
	env = []string{"AWS_ENDPOINT_URL_DYNAMODB=" + url, "AWS_ACCESS_KEY_ID=local", "AWS_SECRET_ACCESS_KEY=local",
		"AWS_REGION=us-east-1", "BATON_LEASE_TABLE=" + table, "BATON_CREATE_TABLE=true"}
	ds, err := openDynamo(ctxT(t), config{LeaseTable: table}, url, awsconfig.WithRegion("us-east-1"),
		awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("local", "local", "")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// The binary made the table; a run that failed before may not have.
		ds.db.(*dynamodb.Client).DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: &table})
	})
	return env, settled{ds}
}
