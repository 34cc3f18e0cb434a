package worker

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// observed is the client the pipeline calls through: every call carries
// the option that counts its attempts into the worker's metrics, so that a
// client built by the program embedding the worker is counted too.
type observed struct {
	api API
	opt func(*sqs.Options)
}

func (o observed) with(opts []func(*sqs.Options)) []func(*sqs.Options) {
	return append(opts, o.opt)
}

func (o observed) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	return o.api.ReceiveMessage(ctx, in, o.with(opts)...)
}

func (o observed) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	return o.api.DeleteMessageBatch(ctx, in, o.with(opts)...)
}

func (o observed) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	return o.api.ChangeMessageVisibilityBatch(ctx, in, o.with(opts)...)
}

func (o observed) SendMessage(ctx context.Context, in *sqs.SendMessageInput, opts ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	return o.api.SendMessage(ctx, in, o.with(opts)...)
}

func (o observed) GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, opts ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error) {
	return o.api.GetQueueUrl(ctx, in, o.with(opts)...)
}

func (o observed) GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	return o.api.GetQueueAttributes(ctx, in, o.with(opts)...)
}
