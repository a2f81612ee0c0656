# The AWS side of wojak: the order sources (SQS with a DLQ, SNS fanning out
# into it, Kinesis with its lease table), the sandbox broker Lambda (the default venue) and the
# IRSA role of the wojak pods, scoped to exactly these resources.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  tags       = merge(var.tags, { "wojak.io/component" = "services" })

  # Names are fixed up front so the key policy can name the resources that
  # use the key without a dependency cycle.
  topic_name      = "${var.name}-orders"
  function_name   = "${var.name}-sandbox-broker"
  topic_arn       = "arn:${local.partition}:sns:${local.region}:${local.account_id}:${local.topic_name}"
  lambda_log_name = "/aws/lambda/${local.function_name}"
}

# ---------------------------------------------------------------- KMS ------

resource "aws_kms_key" "data" {
  description             = "${var.name}: order queues, topic, stream, sandbox Lambda"
  enable_key_rotation     = true
  deletion_window_in_days = 30

  # "Resource": "*" in a key policy means this key only.
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministration"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "SnsDeliveryToEncryptedQueue"
        Effect    = "Allow"
        Principal = { Service = "sns.amazonaws.com" }
        Action    = ["kms:GenerateDataKey*", "kms:Decrypt"]
        Resource  = "*"
        Condition = { ArnEquals = { "aws:SourceArn" = local.topic_arn } }
      },
      {
        Sid       = "LambdaLogs"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = {
          ArnEquals = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.lambda_log_name}"
          }
        }
      },
    ]
  })

  tags = local.tags
}

resource "aws_kms_alias" "data" {
  name          = "alias/${var.name}-data"
  target_key_id = aws_kms_key.data.key_id
}

# ---------------------------------------------------------------- SQS ------

resource "aws_sqs_queue" "orders_dlq" {
  name                              = "${var.name}-orders-dlq"
  message_retention_seconds         = 1209600 # 14 days, the SQS maximum
  kms_master_key_id                 = aws_kms_key.data.arn
  kms_data_key_reuse_period_seconds = 300
  tags                              = local.tags
}

resource "aws_sqs_queue" "orders" {
  name                              = "${var.name}-orders"
  visibility_timeout_seconds        = var.queue_visibility_timeout_seconds
  message_retention_seconds         = 345600 # 4 days
  receive_wait_time_seconds         = 20     # long polling
  kms_master_key_id                 = aws_kms_key.data.arn
  kms_data_key_reuse_period_seconds = 300

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.orders_dlq.arn
    maxReceiveCount     = var.queue_max_receive_count
  })

  tags = local.tags
}

resource "aws_sqs_queue_redrive_allow_policy" "orders_dlq" {
  queue_url = aws_sqs_queue.orders_dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.orders.arn]
  })
}

# ---------------------------------------------------------------- SNS ------

resource "aws_sns_topic" "orders" {
  name              = local.topic_name
  kms_master_key_id = aws_kms_key.data.arn
  tags              = local.tags
}

resource "aws_sqs_queue_policy" "orders_from_sns" {
  queue_url = aws_sqs_queue.orders.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "OrdersTopicDelivers"
      Effect    = "Allow"
      Principal = { Service = "sns.amazonaws.com" }
      Action    = "sqs:SendMessage"
      Resource  = aws_sqs_queue.orders.arn
      Condition = { ArnEquals = { "aws:SourceArn" = aws_sns_topic.orders.arn } }
    }]
  })
}

resource "aws_sns_topic_subscription" "orders_to_queue" {
  topic_arn            = aws_sns_topic.orders.arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.orders.arn
  raw_message_delivery = true
}

# ------------------------------------------------------------ Kinesis ------

resource "aws_kinesis_stream" "orders" {
  name             = "${var.name}-orders"
  retention_period = var.kinesis_retention_hours
  encryption_type  = "KMS"
  kms_key_id       = aws_kms_key.data.arn

  stream_mode_details {
    stream_mode = "ON_DEMAND"
  }

  tags = local.tags
}

# The Kinesis sidecar's lease table: which replica reads which shard, and each shard's
# checkpoint. Made here (the release sets createLeaseTable=false), so the pods need no
# dynamodb:CreateTable. Its key schema is the one the sidecar creates when it makes one itself.
resource "aws_dynamodb_table" "kinesis_leases" {
  name                        = "${var.name}-kinesis-leases"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "leaseKey"
  deletion_protection_enabled = true

  attribute {
    name = "leaseKey"
    type = "S"
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.data.arn
  }

  point_in_time_recovery {
    enabled = true
  }

  tags = local.tags
}

# ------------------------------------------------ sandbox broker Lambda ----

resource "aws_sqs_queue" "sandbox_dlq" {
  name                              = "${var.name}-sandbox-broker-dlq"
  message_retention_seconds         = 1209600
  kms_master_key_id                 = aws_kms_key.data.arn
  kms_data_key_reuse_period_seconds = 300
  tags                              = local.tags
}

resource "aws_cloudwatch_log_group" "sandbox" {
  name              = local.lambda_log_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
  tags              = local.tags
}

resource "aws_iam_role" "sandbox" {
  name = "${local.function_name}-exec"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = local.tags
}

resource "aws_iam_role_policy" "sandbox" {
  name = "sandbox-broker"
  role = aws_iam_role.sandbox.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "OwnLogs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = ["${aws_cloudwatch_log_group.sandbox.arn}:*"]
      },
      {
        Sid      = "OwnDeadLetterQueue"
        Effect   = "Allow"
        Action   = ["sqs:SendMessage"]
        Resource = [aws_sqs_queue.sandbox_dlq.arn]
      },
      {
        Sid      = "ProjectKey"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource = [aws_kms_key.data.arn]
      },
    ]
  })
}

# X-Ray trace segments cannot be scoped to a resource; the AWS managed policy
# grants only the two write calls.
resource "aws_iam_role_policy_attachment" "sandbox_xray" {
  role       = aws_iam_role.sandbox.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"
}

resource "aws_lambda_function" "sandbox" {
  #checkov:skip=CKV_AWS_117:The sandbox broker reaches no VPC resource; attaching it to the VPC would only add ENIs and NAT cost.
  #checkov:skip=CKV_AWS_272:The package is the local zip built by `wojak sandbox package`; AWS Signer needs an S3-hosted signed artifact, which this pipeline does not produce.
  function_name                  = local.function_name
  description                    = "wojak sandbox broker: fills or rejects orders deterministically from (client_order_id, seed)"
  filename                       = var.sandbox_lambda_zip
  source_code_hash               = filebase64sha256(var.sandbox_lambda_zip)
  handler                        = "wojak.engine.venue.sandbox.handler"
  runtime                        = var.sandbox_lambda_runtime
  architectures                  = ["x86_64"]
  role                           = aws_iam_role.sandbox.arn
  timeout                        = var.sandbox_timeout_seconds
  memory_size                    = var.sandbox_memory_mb
  reserved_concurrent_executions = var.sandbox_reserved_concurrency
  kms_key_arn                    = aws_kms_key.data.arn

  environment {
    variables = merge({ WOJAK_SANDBOX_LOG_LEVEL = "INFO" }, var.sandbox_environment)
  }

  dead_letter_config {
    target_arn = aws_sqs_queue.sandbox_dlq.arn
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.sandbox.name
  }

  tags = local.tags

  depends_on = [
    aws_iam_role_policy.sandbox,
    aws_iam_role_policy_attachment.sandbox_xray,
  ]
}

# ------------------------------------------------- IRSA for wojak pods -----

resource "aws_iam_role" "wojak" {
  name        = "${var.name}-wojak-irsa"
  description = "Assumed only by ${var.namespace}/${var.service_account_name} through the EKS OIDC provider"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Federated = var.oidc_provider_arn }
      Action    = "sts:AssumeRoleWithWebIdentity"
      Condition = {
        StringEquals = {
          "${var.oidc_issuer}:sub" = "system:serviceaccount:${var.namespace}:${var.service_account_name}"
          "${var.oidc_issuer}:aud" = "sts.amazonaws.com"
        }
      }
    }]
  })
  tags = local.tags
}

resource "aws_iam_role_policy" "wojak" {
  name = "wojak-data-plane"
  role = aws_iam_role.wojak.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid    = "ConsumeOrdersQueue"
        Effect = "Allow"
        Action = [
          "sqs:ReceiveMessage",
          "sqs:DeleteMessage",
          "sqs:ChangeMessageVisibility",
          "sqs:GetQueueAttributes",
          "sqs:GetQueueUrl",
        ]
        Resource = [aws_sqs_queue.orders.arn]
      },
      {
        Sid      = "DeadLetterOrders"
        Effect   = "Allow"
        Action   = ["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
        Resource = [aws_sqs_queue.orders_dlq.arn]
      },
      {
        Sid      = "OrdersTopic"
        Effect   = "Allow"
        Action   = ["sns:Publish", "sns:GetTopicAttributes"]
        Resource = [aws_sns_topic.orders.arn]
      },
      {
        Sid    = "OrdersStream"
        Effect = "Allow"
        Action = [
          "kinesis:DescribeStream",
          "kinesis:DescribeStreamSummary",
          "kinesis:ListShards",
          "kinesis:GetShardIterator",
          "kinesis:GetRecords",
          "kinesis:PutRecord",
          "kinesis:PutRecords",
        ]
        Resource = [aws_kinesis_stream.orders.arn]
      },
      {
        # the shard leases and checkpoints of the Kinesis sidecar (conditional writes, consistent scans)
        Sid    = "KinesisLeaseTable"
        Effect = "Allow"
        Action = [
          "dynamodb:DescribeTable",
          "dynamodb:Scan",
          "dynamodb:GetItem",
          "dynamodb:PutItem",
          "dynamodb:UpdateItem",
        ]
        Resource = [aws_dynamodb_table.kinesis_leases.arn]
      },
      {
        # DynamoDB uses the table's key on the caller's behalf, only through DynamoDB
        Sid      = "LeaseTableKey"
        Effect   = "Allow"
        Action   = ["kms:Encrypt", "kms:DescribeKey", "kms:CreateGrant"]
        Resource = [aws_kms_key.data.arn]
        Condition = {
          StringEquals = { "kms:ViaService" = "dynamodb.${local.region}.amazonaws.com" }
        }
      },
      {
        Sid      = "InvokeSandboxBroker"
        Effect   = "Allow"
        Action   = ["lambda:InvokeFunction"]
        Resource = [aws_lambda_function.sandbox.arn]
      },
      {
        Sid      = "ProjectKey"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource = [aws_kms_key.data.arn]
      },
    ]
  })
}
