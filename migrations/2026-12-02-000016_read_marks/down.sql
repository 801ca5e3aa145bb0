DROP TABLE read_marks;
