-- Run once by the PostgreSQL image when it makes the cluster: one database per service that keeps
-- data (cart keeps its carts in Redis). The services migrate their own schemas.
CREATE DATABASE bazaar_catalog OWNER bazaar;
CREATE DATABASE bazaar_accounts OWNER bazaar;
CREATE DATABASE bazaar_orders OWNER bazaar;
CREATE DATABASE bazaar_notifications OWNER bazaar;
