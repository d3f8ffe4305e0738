DROP TABLE idp_metadata;
