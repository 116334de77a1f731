package state

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// ErrExists is returned by Create when the record is already there.
var ErrExists = errors.New("record already exists")

// ErrConflict is returned by Update when someone else wrote the record
// since it was read; the caller re-reads and reconciles again.
var ErrConflict = errors.New("record changed since it was read")

// ErrNotFound is returned by Get for a record that does not exist.
var ErrNotFound = errors.New("record not found")

// Store reads and writes rescue records in one DynamoDB table.
type Store struct {
	db    *dynamodb.Client
	table string
	now   func() time.Time
	// fence is the lease version record writes carry, and no newer one may
	// have written a record this one updates; 0 without a lease. Only a
	// lease Term makes a Store with a fence (see Term.Records).
	fence int64
}

// New returns a Store for table.
func New(db *dynamodb.Client, table string) *Store {
	return &Store{db: db, table: table, now: time.Now}
}

// Table is the table's name.
func (s *Store) Table() string { return s.table }

// sortTime is fixed-width so that string order is time order in the GSIs.
const sortTime = "2006-01-02T15:04:05.000000000Z"

func pk(cluster, jobID string) string { return "JOB#" + cluster + "#" + jobID }
func sk(run int) string               { return fmt.Sprintf("RUN#%06d", run) }
func clusterPK(cluster string) string { return "CLUSTER#" + cluster }

// item is the stored form: the record plus the key attributes derived from it.
type item struct {
	PK, SK, GSI1PK, GSI1SK string
	ActivePK               string `dynamodbav:",omitempty"`
	Fence                  int64  `dynamodbav:",omitempty"` // lease version of the last write
	// NodesZ holds the nodes of a job with many, gzipped JSON, in place of
	// Nodes: a DynamoDB item is at most 400 KB, and a node's entry takes
	// about 150 bytes, so a job of some 2,000 nodes would not fit.
	NodesZ []byte `dynamodbav:",omitempty"`
	Record
}

// packNodesOver is the node count above which a record's nodes are
// compressed: a job that small stays readable in the console.
const packNodesOver = 64

func toItem(r *Record, fence int64) (map[string]types.AttributeValue, error) {
	it := item{
		Fence:  fence,
		PK:     pk(r.Cluster, r.JobID),
		SK:     sk(r.Run),
		GSI1PK: clusterPK(r.Cluster),
		GSI1SK: r.Times.Detected.UTC().Format(sortTime) + "#" + r.JobID + "#" + strconv.Itoa(r.Run),
		Record: *r,
	}
	if !r.Phase.Terminal() {
		it.ActivePK = clusterPK(r.Cluster)
	}
	if len(r.Nodes) > packNodesOver {
		z, err := packNodes(r.Nodes)
		if err != nil {
			return nil, fmt.Errorf("encode record %s: %w", r.Key, err)
		}
		it.NodesZ, it.Nodes = z, nil
	}
	av, err := attributevalue.MarshalMapWithOptions(it, func(o *attributevalue.EncoderOptions) { o.OmitEmptyTime = true })
	if err != nil {
		return nil, fmt.Errorf("encode record %s: %w", r.Key, err)
	}
	return av, nil
}

func fromItem(av map[string]types.AttributeValue) (*Record, error) {
	var it item
	if err := attributevalue.UnmarshalMap(av, &it); err != nil {
		return nil, fmt.Errorf("decode record %v: %w", av[AttrPK], err)
	}
	if len(it.NodesZ) > 0 {
		nodes, err := unpackNodes(it.NodesZ)
		if err != nil {
			return nil, fmt.Errorf("decode record %v: nodes: %w", av[AttrPK], err)
		}
		it.Nodes = nodes
	}
	return &it.Record, nil
}

func packNodes(nodes []Node) ([]byte, error) {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if err := json.NewEncoder(zw).Encode(nodes); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// maxNodesJSON bounds what unpacking a record's nodes may take (a
// corrupted or hostile item must not exhaust memory): far above what
// 400 KB of gzip holds for real node lists.
const maxNodesJSON = 64 << 20

func unpackNodes(z []byte) ([]Node, error) {
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, err
	}
	var nodes []Node
	err = json.NewDecoder(io.LimitReader(zr, maxNodesJSON)).Decode(&nodes)
	return nodes, err
}

// Create stores a new record at version 1; ErrExists if the key is taken.
func (s *Store) Create(ctx context.Context, r *Record) error {
	r.Version = 1
	av, err := toItem(r, s.fence)
	if err != nil {
		return err
	}
	_, err = s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:           aws.String(s.table),
		Item:                av,
		ConditionExpression: aws.String("attribute_not_exists(PK)"),
	})
	if isConditionFailed(err) {
		return ErrExists
	}
	if err != nil {
		return fmt.Errorf("create record %s: %w", r.Key, err)
	}
	return nil
}

// Update writes r if nobody else has since it was read, and bumps its version.
func (s *Store) Update(ctx context.Context, r *Record) error {
	prev := r.Version
	r.Version++
	av, err := toItem(r, s.fence)
	if err != nil {
		r.Version = prev
		return err
	}
	cond := "Version = :v"
	values := map[string]types.AttributeValue{":v": nval(prev)}
	if f := s.fence; f > 0 {
		// Fencing: a controller whose lease was taken over writes nothing
		// over what the new holder wrote.
		cond += " AND (attribute_not_exists(Fence) OR Fence <= :f)"
		values[":f"] = nval(f)
	}
	_, err = s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                 aws.String(s.table),
		Item:                      av,
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeValues: values,
	})
	if err != nil {
		r.Version = prev
		if isConditionFailed(err) {
			return ErrConflict
		}
		return fmt.Errorf("update record %s: %w", r.Key, err)
	}
	return nil
}

// Get reads one record with a strongly consistent read.
func (s *Store) Get(ctx context.Context, k Key) (*Record, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.table),
		Key:            keyOf(pk(k.Cluster, k.JobID), sk(k.Run)),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, fmt.Errorf("get record %s: %w", k, err)
	}
	if out.Item == nil {
		return nil, ErrNotFound
	}
	return fromItem(out.Item)
}

// Runs returns every record of one job, oldest run first.
func (s *Store) Runs(ctx context.Context, cluster, jobID string) ([]*Record, error) {
	return s.query(ctx, &dynamodb.QueryInput{
		TableName:                 aws.String(s.table),
		KeyConditionExpression:    aws.String("PK = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: pk(cluster, jobID)}},
		ConsistentRead:            aws.Bool(true),
	}, 0)
}

// Active returns the keys of every record of cluster that is not Done.
func (s *Store) Active(ctx context.Context, cluster string) ([]Key, error) {
	recs, err := s.query(ctx, &dynamodb.QueryInput{
		TableName:                 aws.String(s.table),
		IndexName:                 aws.String(IndexActive),
		KeyConditionExpression:    aws.String("ActivePK = :c"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":c": &types.AttributeValueMemberS{Value: clusterPK(cluster)}},
	}, 0)
	if err != nil {
		return nil, fmt.Errorf("list active records: %w", err)
	}
	keys := make([]Key, len(recs))
	for i, r := range recs {
		keys[i] = r.Key
	}
	return keys, nil
}

// AwaitingResume returns cluster's records detected since since whose
// rescued data no later run has been counted as starting from yet
// (Record.AwaitsResume): what a new leader watches.
func (s *Store) AwaitingResume(ctx context.Context, cluster string, since time.Time) ([]*Record, error) {
	recs, err := s.query(ctx, &dynamodb.QueryInput{
		TableName:                aws.String(s.table),
		IndexName:                aws.String(IndexByCluster),
		KeyConditionExpression:   aws.String("GSI1PK = :c AND GSI1SK >= :t"),
		FilterExpression:         aws.String("#p = :done AND attribute_not_exists(Saved)"),
		ExpressionAttributeNames: map[string]string{"#p": "Phase"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":c":    &types.AttributeValueMemberS{Value: clusterPK(cluster)},
			":t":    &types.AttributeValueMemberS{Value: since.UTC().Format(sortTime)},
			":done": &types.AttributeValueMemberS{Value: string(Done)},
		},
	}, 0)
	if err != nil {
		return nil, fmt.Errorf("list records awaiting a resume: %w", err)
	}
	out := recs[:0]
	for _, r := range recs {
		if r.AwaitsResume() {
			out = append(out, r)
		}
	}
	return out, nil
}

func (s *Store) query(ctx context.Context, in *dynamodb.QueryInput, limit int) ([]*Record, error) {
	var out []*Record
	p := dynamodb.NewQueryPaginator(s.db, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("query %s: %w", s.table, err)
		}
		for _, av := range page.Items {
			r, err := fromItem(av)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
			if limit > 0 && len(out) == limit {
				return out, nil
			}
		}
	}
	return out, nil
}

func keyOf(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		AttrPK: &types.AttributeValueMemberS{Value: pk},
		AttrSK: &types.AttributeValueMemberS{Value: sk},
	}
}

func isConditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// ListOptions select records for `spotrescue jobs list`.
type ListOptions struct {
	Cluster   string
	Since     time.Time
	Phase     Phase
	Outcome   Outcome
	User      string
	Limit     int
	PageToken string // from a previous List; empty for the newest records
}

// List returns a cluster's records newest first, filtered, one page at a
// time: a Query on the ByCluster index, never a Scan. The token resumes
// after the last record returned; it is empty on the last page.
func (s *Store) List(ctx context.Context, o ListOptions) ([]*Record, string, error) {
	in := &dynamodb.QueryInput{
		TableName:              aws.String(s.table),
		IndexName:              aws.String(IndexByCluster),
		KeyConditionExpression: aws.String("GSI1PK = :c AND GSI1SK >= :t"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":c": &types.AttributeValueMemberS{Value: clusterPK(o.Cluster)},
			":t": &types.AttributeValueMemberS{Value: o.Since.UTC().Format(sortTime)},
		},
		ScanIndexForward: aws.Bool(false),
	}
	var filters []string
	names := map[string]string{}
	addFilter := func(attr, placeholder, value string) {
		if value == "" {
			return
		}
		names["#"+placeholder] = attr
		in.ExpressionAttributeValues[":"+placeholder] = &types.AttributeValueMemberS{Value: value}
		filters = append(filters, "#"+placeholder+" = :"+placeholder)
	}
	addFilter("Phase", "phase", string(o.Phase))
	addFilter("Outcome", "outcome", string(o.Outcome))
	addFilter("User", "user", o.User)
	if len(filters) > 0 {
		in.FilterExpression = aws.String(strings.Join(filters, " AND "))
		in.ExpressionAttributeNames = names
	}
	if o.PageToken != "" {
		start, err := decodeToken(o.PageToken)
		if err != nil {
			return nil, "", err
		}
		in.ExclusiveStartKey = start
	}
	limit := o.Limit
	if limit <= 0 {
		limit = 50
	}
	return s.page(ctx, in, limit)
}

// page queries until limit records passed the filter, and makes the token
// from the last one returned, so no record is skipped or repeated.
func (s *Store) page(ctx context.Context, in *dynamodb.QueryInput, limit int) ([]*Record, string, error) {
	var out []*Record
	var last map[string]types.AttributeValue
	for {
		resp, err := s.db.Query(ctx, in)
		if err != nil {
			return nil, "", fmt.Errorf("query %s: %w", s.table, err)
		}
		for _, av := range resp.Items {
			r, err := fromItem(av)
			if err != nil {
				return nil, "", err
			}
			out = append(out, r)
			last = av
			if len(out) == limit {
				return out, encodeToken(last), nil
			}
		}
		if resp.LastEvaluatedKey == nil {
			return out, "", nil
		}
		in.ExclusiveStartKey = resp.LastEvaluatedKey
	}
}

// encodeToken keeps only the key attributes of the index and the table.
func encodeToken(item map[string]types.AttributeValue) string {
	key := map[string]string{}
	for _, a := range []string{AttrPK, AttrSK, AttrGSI1PK, AttrGSI1SK} {
		if v, ok := item[a].(*types.AttributeValueMemberS); ok {
			key[a] = v.Value
		}
	}
	b, _ := json.Marshal(key)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(token string) (map[string]types.AttributeValue, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	var key map[string]string
	if err == nil {
		err = json.Unmarshal(b, &key)
	}
	if err != nil || len(key) != 4 {
		return nil, fmt.Errorf("page token %q is not one spotrescue gave out", token)
	}
	out := map[string]types.AttributeValue{}
	for k, v := range key {
		out[k] = &types.AttributeValueMemberS{Value: v}
	}
	return out, nil
}

// maxBatchGet is DynamoDB's limit on keys per BatchGetItem.
const maxBatchGet = 100

// Exists reports which of keys have a record, with BatchGetItem: a batch
// of warnings learns which are new in one read per hundred jobs.
func (s *Store) Exists(ctx context.Context, keys []Key) (map[Key]bool, error) {
	out := map[Key]bool{}
	for len(keys) > 0 {
		n := min(len(keys), maxBatchGet)
		req := make([]map[string]types.AttributeValue, 0, n)
		seen := map[Key]bool{}
		for _, k := range keys[:n] {
			if !seen[k] {
				seen[k] = true
				req = append(req, keyOf(pk(k.Cluster, k.JobID), sk(k.Run)))
			}
		}
		keys = keys[n:]
		pending := map[string]types.KeysAndAttributes{s.table: {Keys: req, ProjectionExpression: aws.String("PK, SK"), ConsistentRead: aws.Bool(true)}}
		for attempt := 0; len(pending) > 0; attempt++ {
			resp, err := s.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: pending})
			if err != nil {
				return nil, fmt.Errorf("look up records: %w", err)
			}
			for _, item := range resp.Responses[s.table] {
				if k, ok := keyFromItem(item); ok {
					out[k] = true
				}
			}
			pending = resp.UnprocessedKeys
			if attempt == 8 && len(pending) > 0 {
				return nil, fmt.Errorf("look up records: keys still unprocessed after %d attempts", attempt+1)
			}
			if len(pending) > 0 {
				time.Sleep(time.Duration(50<<min(attempt, 5)) * time.Millisecond)
			}
		}
	}
	return out, nil
}

// keyFromItem reads the key back from PK "JOB#<cluster>#<job>" and SK "RUN#<n>".
func keyFromItem(item map[string]types.AttributeValue) (Key, bool) {
	p, ok1 := item[AttrPK].(*types.AttributeValueMemberS)
	q, ok2 := item[AttrSK].(*types.AttributeValueMemberS)
	if !ok1 || !ok2 {
		return Key{}, false
	}
	rest, ok := strings.CutPrefix(p.Value, "JOB#")
	i := strings.LastIndex(rest, "#")
	run, err := strconv.Atoi(strings.TrimPrefix(q.Value, "RUN#"))
	if !ok || i < 0 || err != nil {
		return Key{}, false
	}
	return Key{Cluster: rest[:i], JobID: rest[i+1:], Run: run}, true
}
