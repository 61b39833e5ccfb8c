package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// TestSecrets_get_secret_value_signed: the call is Secrets Manager's JSON
// protocol, SigV4-signed for the service in the configured region, and
// its error names the service's exception without the secret.
func TestSecrets_get_secret_value_signed(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct{ SecretId string }
		body, _ := io.ReadAll(r.Body)
		json.Unmarshal(body, &in)
		auth := r.Header.Get("Authorization")
		switch {
		case r.Method != http.MethodPost || r.Header.Get("X-Amz-Target") != "secretsmanager.GetSecretValue" ||
			r.Header.Get("Content-Type") != "application/x-amz-json-1.1":
			http.Error(w, "not GetSecretValue: "+r.Method+" "+r.Header.Get("X-Amz-Target"), http.StatusBadRequest)
		case !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKIDTEST/") || !strings.Contains(auth, "/eu-west-1/secretsmanager/aws4_request") ||
			!strings.Contains(auth, "Signature=") || r.Header.Get("X-Amz-Security-Token") != "session":
			http.Error(w, "unsigned: "+auth, http.StatusForbidden)
		case in.SecretId != testARN:
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"__type":"com.amazonaws.secretsmanager#ResourceNotFoundException","Message":"Secrets Manager can't find the specified secret."}`)
		default:
			json.NewEncoder(w).Encode(map[string]string{"ARN": in.SecretId, "SecretString": `{"username":"u","password":"p"}`})
		}
	}))
	defer srv.Close()
	sm := secretsManager{aws.Config{Region: "eu-west-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret-key", "session")}}
	got, err := sm.secretString(context.Background(), testARN)
	if err != nil || got == nil || *got != `{"username":"u","password":"p"}` {
		t.Fatalf("secretString(%s) = %v, %v; want the secret", testARN, got, err)
	}
	_, err = sm.secretString(context.Background(), testARN+"-gone")
	if err == nil || !strings.Contains(err.Error(), "ResourceNotFoundException: Secrets Manager can't find") || !strings.Contains(err.Error(), "HTTP 400") {
		t.Errorf("a missing secret: %v; want the exception's name and message, and the status", err)
	}
}

// TestSecrets_endpoint_by_partition: the secret's partition picks the
// endpoint's domain, the region the host; an unknown partition says which
// variable to set.
func TestSecrets_endpoint_by_partition(t *testing.T) {
	t.Parallel()
	for arn, want := range map[string]string{
		"arn:aws:secretsmanager:eu-west-1:123456789012:secret:s":         "https://secretsmanager.eu-west-1.amazonaws.com",
		"arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:s":     "https://secretsmanager.cn-north-1.amazonaws.com.cn",
		"arn:aws-us-gov:secretsmanager:us-gov-west-1:12345678901:secret": "https://secretsmanager.us-gov-west-1.amazonaws.com",
	} {
		region := strings.Split(arn, ":")[3]
		if got, err := (secretsManager{aws.Config{Region: region}}).endpoint(arn); err != nil || got != want {
			t.Errorf("endpoint(%s) = %q, %v; want %q", arn, got, err, want)
		}
	}
	if _, err := (secretsManager{aws.Config{Region: "x"}}).endpoint("arn:aws-iso:secretsmanager:x:1:secret:s"); err == nil || !strings.Contains(err.Error(), "AWS_ENDPOINT_URL_SECRETS_MANAGER") {
		t.Errorf("an unknown partition: %v; want the variable to set named", err)
	}
}
