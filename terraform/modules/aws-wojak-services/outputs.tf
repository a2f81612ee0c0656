output "kms_key_arn" {
  description = "ARN of the KMS key encrypting the queues, topic, stream, Lambda environment and logs."
  value       = aws_kms_key.data.arn
}

output "orders_queue_url" {
  description = "URL of the SQS orders queue (source.sqs.queueUrl)."
  value       = aws_sqs_queue.orders.url
}

output "orders_queue_arn" {
  description = "ARN of the SQS orders queue."
  value       = aws_sqs_queue.orders.arn
}

output "orders_dlq_url" {
  description = "URL of the orders dead-letter queue."
  value       = aws_sqs_queue.orders_dlq.url
}

output "orders_dlq_arn" {
  description = "ARN of the orders dead-letter queue."
  value       = aws_sqs_queue.orders_dlq.arn
}

output "orders_topic_arn" {
  description = "ARN of the SNS orders topic (source.sns.topicArn); it fans out into the orders queue."
  value       = aws_sns_topic.orders.arn
}

output "orders_stream_name" {
  description = "Name of the Kinesis orders stream (source.kinesis.streamName)."
  value       = aws_kinesis_stream.orders.name
}

output "orders_stream_arn" {
  description = "ARN of the Kinesis orders stream."
  value       = aws_kinesis_stream.orders.arn
}

output "kinesis_lease_table_name" {
  description = "Name of the Kinesis sidecar's DynamoDB lease table (source.kinesis.leaseTable, with createLeaseTable = false)."
  value       = aws_dynamodb_table.kinesis_leases.name
}

output "sandbox_function_name" {
  description = "Name of the sandbox broker Lambda."
  value       = aws_lambda_function.sandbox.function_name
}

output "sandbox_function_arn" {
  description = "ARN of the sandbox broker Lambda."
  value       = aws_lambda_function.sandbox.arn
}

output "sandbox_dlq_arn" {
  description = "ARN of the sandbox broker Lambda's dead-letter queue (failed asynchronous invocations)."
  value       = aws_sqs_queue.sandbox_dlq.arn
}

output "wojak_role_arn" {
  description = "ARN of the IRSA role for the wojak service account (eks.amazonaws.com/role-arn)."
  value       = aws_iam_role.wojak.arn
}
