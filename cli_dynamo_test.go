//go:build !redis

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// cliStore is a lease store of the test's own on DynamoDB Local, and the
// environment that points the binary's code at it. The SDK reads its
// endpoint, region and credentials from the process environment, so they
// are set there (t.Setenv: the caller must not be parallel).
func cliStore(t *testing.T) (store, map[string]string) {
	t.Helper()
	url := needServer(t, "BATON_TEST_DYNAMO")
	table := fmt.Sprintf("baton-cli-%d", time.Now().UnixNano())
	s, err := openDynamo(ctxT(t), config{LeaseTable: table, CreateTable: true}, url, testAWS()...)
	must(t, err)
	t.Cleanup(func() { dropTable(t, table) })
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", url)
	for k, v := range map[string]string{"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"} {
		if os.Getenv(k) == "" {
			t.Setenv(k, v)
		}
	}
	return settled{s}, map[string]string{"BATON_LEASE_TABLE": table}
}

// otherStoreArgs name the store of the other build.
func otherStoreArgs() []string { return []string{"-redis", "127.0.0.1:6379"} }

// readmeStoreArgs rewrites README's store flags for this build's test store.
func readmeStoreArgs(args []string, env map[string]string) []string {
	for i := range args {
		if i > 0 && args[i-1] == "-lease-table" {
			args[i] = env["BATON_LEASE_TABLE"]
		}
	}
	return args
}

// tableExists tells whether DynamoDB Local has the table.
func tableExists(t *testing.T, table string) bool {
	t.Helper()
	s := testDynamo(t, os.Getenv("BATON_TEST_DYNAMO"), table)
	_, err := s.db.DescribeTable(context.Background(), &dynamodb.DescribeTableInput{TableName: &table})
	if errors.As(err, new(*types.ResourceNotFoundException)) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}
