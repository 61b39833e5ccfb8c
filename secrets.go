// secrets.go is the one Secrets Manager call baton makes (-sasl-secret),
// GetSecretValue, as a request signed with the SDK's SigV4 signer. The
// service's client package would cost every cold start a third of a
// millisecond of package initializers, under Lambda a tenth of baton's
// start, for a call made once per container and only with -sasl-secret.

package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// secretReader reads a secret's SecretString; tests fake it.
type secretReader interface {
	secretString(ctx context.Context, arn string) (*string, error)
}

// secretsManager calls Secrets Manager with an AWS configuration (loadAWS).
type secretsManager struct{ cfg aws.Config }

// secretsDomains are the DNS suffixes of Secrets Manager's endpoints by the
// ARN's partition; another partition needs AWS_ENDPOINT_URL_SECRETS_MANAGER.
var secretsDomains = map[string]string{"aws": "amazonaws.com", "aws-us-gov": "amazonaws.com", "aws-cn": "amazonaws.com.cn"}

func (s secretsManager) secretString(ctx context.Context, arn string) (*string, error) {
	url, err := s.endpoint(arn)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(map[string]string{"SecretId": arn})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "secretsmanager.GetSecretValue")
	if s.cfg.Credentials == nil {
		return nil, fmt.Errorf("no AWS credentials")
	}
	creds, err := s.cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("AWS credentials: %w", err)
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "secretsmanager", s.cfg.Region, time.Now()); err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Type    string `json:"__type"`
			Message string `json:"message"`
			Upper   string `json:"Message"`
		}
		json.Unmarshal(got, &e)
		_, name, _ := strings.Cut(e.Type, "#")
		return nil, fmt.Errorf("%s: %s (HTTP %d)", cmp.Or(name, e.Type, "error"), cmp.Or(e.Message, e.Upper, http.StatusText(resp.StatusCode)), resp.StatusCode)
	}
	var out struct{ SecretString *string }
	if json.Unmarshal(got, &out) != nil {
		// The decoder's message may quote the secret: it is not passed on.
		return nil, fmt.Errorf("GetSecretValue: the answer is not JSON")
	}
	return out.SecretString, nil
}

// endpoint is the configured endpoint, else the secret's region's.
func (s secretsManager) endpoint(arn string) (string, error) {
	if url := aws.ToString(s.cfg.BaseEndpoint); url != "" {
		return url, nil
	}
	partition := strings.Split(arn, ":")[1]
	domain, ok := secretsDomains[partition]
	if !ok {
		return "", fmt.Errorf("no known Secrets Manager endpoint in partition %s: set AWS_ENDPOINT_URL_SECRETS_MANAGER", partition)
	}
	return fmt.Sprintf("https://secretsmanager.%s.%s", s.cfg.Region, domain), nil
}
