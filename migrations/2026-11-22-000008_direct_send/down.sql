DROP FUNCTION fastchat_send_direct(BIGINT[], TEXT[], BOOLEAN[], UUID[], TEXT[], TEXT[], TEXT[], TEXT[], TEXT[], TEXT[]);
