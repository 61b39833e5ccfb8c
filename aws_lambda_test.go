//go:build !redis && lambda.norpc

package main

// testAWS: the Lambda build reads region and credentials from the
// environment only; ./bootstrap.sh test sets them for DynamoDB Local.
func testAWS() []awsOption { return nil }
