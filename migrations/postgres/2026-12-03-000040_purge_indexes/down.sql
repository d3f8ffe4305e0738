DROP INDEX refresh_tokens_grant;
DROP INDEX refresh_tokens_expires;
DROP INDEX sessions_expires;
