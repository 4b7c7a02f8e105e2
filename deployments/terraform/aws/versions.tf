terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
  }
  # Keep the state remote and locked (fill in, then `terraform init -migrate-state`):
  # backend "s3" {
  #   bucket         = "my-terraform-state"
  #   key            = "bazaar/terraform.tfstate"
  #   region         = "eu-west-1"
  #   dynamodb_table = "terraform-locks"
  #   encrypt        = true
  # }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      Project     = "bazaar"
      Environment = var.environment
      ManagedBy   = "terraform"
    }
  }
}
