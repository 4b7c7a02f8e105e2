output "cluster_name" {
  description = "aws eks update-kubeconfig --name <this> --region <region>"
  value       = aws_eks_cluster.main.name
}

output "postgres_endpoint" {
  description = "host:port of PostgreSQL, for the services' pg_service.conf Secrets."
  value       = aws_db_instance.postgres.endpoint
}

output "postgres_admin_secret_arn" {
  description = "Secrets Manager secret with the admin password RDS generated (used once, to create the service roles)."
  value       = aws_db_instance.postgres.master_user_secret[0].secret_arn
}

output "redis_endpoint" {
  description = "host:port of Redis: BAZAAR_REDIS_ADDR in the prod overlay."
  value       = "${aws_elasticache_replication_group.redis.primary_endpoint_address}:6379"
}

output "data_network_cidr" {
  description = "The block holding the data subnets: the prod overlay's NetworkPolicy ipBlock."
  value       = cidrsubnet(var.vpc_cidr, 3, 1)
}

output "assets_bucket" {
  description = "Bucket for product images."
  value       = aws_s3_bucket.assets.bucket
}
