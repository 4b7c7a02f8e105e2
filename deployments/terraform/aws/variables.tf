variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "environment" {
  description = "Name of the environment; prefixes every resource."
  type        = string
  default     = "prod"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.environment))
    error_message = "environment: lower-case letters, digits and dashes, 2-21 characters."
  }
}

variable "availability_zones" {
  description = "Three availability zones of the region (named, so the layout never moves when AWS adds one)."
  type        = list(string)
  default     = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
  validation {
    condition     = length(var.availability_zones) == 3
    error_message = "availability_zones: exactly three zones."
  }
}

variable "vpc_cidr" {
  description = "The VPC's address range. The data subnets (PostgreSQL, Redis) lie in 10.40.32.0/19 with the default; the prod overlay's NetworkPolicies allow exactly that block."
  type        = string
  default     = "10.40.0.0/16"
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version."
  type        = string
  default     = "1.31"
}

variable "api_allowed_cidrs" {
  description = "Addresses allowed to reach the EKS API endpoint from outside the VPC (your office, CI runners). Empty: private endpoint only."
  type        = list(string)
  default     = []
}

variable "node_instance_type" {
  description = "Worker node size. docs/deployment.md has the sizing."
  type        = string
  default     = "c6i.xlarge"
}

variable "node_count" {
  description = "Desired, minimum and maximum worker nodes."
  type = object({
    desired = number
    min     = number
    max     = number
  })
  default = { desired = 3, min = 3, max = 9 }
}

variable "postgres_instance_class" {
  description = "RDS instance class for PostgreSQL (one instance holds the four service databases)."
  type        = string
  default     = "db.r6g.large"
}

variable "redis_node_type" {
  description = "ElastiCache node type for Redis."
  type        = string
  default     = "cache.r6g.large"
}
