public enum BazaarCore {}
