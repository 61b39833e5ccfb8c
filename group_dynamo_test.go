//go:build !redis

// group_dynamo_test.go loses lease records as a deleted DynamoDB item, for
// group_test.go.

package main

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// losableCompiled opens the DynamoDB store and loses a record with
// DeleteItem, as a person or a script cleaning the table would.
func losableCompiled(t testing.TB, b backend) (store, func(key string)) {
	t.Helper()
	s := b.open(t).(*dynamoStore)
	return s, func(key string) {
		_, err := s.db.(*dynamodb.Client).DeleteItem(ctxT(t), &dynamodb.DeleteItemInput{
			TableName: &s.table, Key: map[string]types.AttributeValue{attrKey: str(key)},
		})
		if err != nil {
			t.Errorf("delete the lease record %s: %v", key, err)
		}
	}
}
