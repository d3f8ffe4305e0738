-- Where the user portal sends a user to open the app (optional: apps without one are not listed).
ALTER TABLE clients ADD COLUMN launch_url TEXT;
