ALTER TABLE clients DROP COLUMN launch_url;
